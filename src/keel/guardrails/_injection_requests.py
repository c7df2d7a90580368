"""More forms of the request families of :mod:`keel.guardrails._injection_rules`: secrets
asked for in disguise or in other languages, other people's data, instruction overrides in the
languages most used to slip past English-only filters, stories that suspend the rules, and
payloads cut into pieces to be joined later. Same conventions as that module.
"""

from __future__ import annotations

from keel.guardrails._injection_rules import Family, cat, keys

__all__ = ["MORE_FAMILIES"]

_CONFIDENTIAL = (
    r"(?:password|passcode|passphrase|pass code|pass phrase|secret key|secret phrase|"
    r"secret word|secret code|secret string|api key|access key|private key|credentials|"
    r"access code|unlock code|pin code|confidential (?:string|key|code|information|data)|"
    r"system prompt|system message|hidden prompt|initial prompt|original prompt|"
    r"(?:secret|hidden|internal|confidential|initial|original|system) instructions)"
)
_NOT_ABOUT_IT = (
    r"(?!\s+(?:requirements?|policy|policies|manager|reset|strength|field|length|rules|hash|"
    r"hashing|protection|complexity|generator|recovery|change|expiry|expiration|"
    r"for my|of my|to my|i|you gave me|engineering|design|best practices|injection))"
)
_ASK = (
    r"(?:what(?:'s| is| are| was| were)?|tell|give|share|reveal|provide|send|show|confirm|"
    r"disclose|leak|print|output|display|repeat|recite|spell|write|say|type|list|dump|"
    r"expose|hint|need|want|know|encode|translate|convert|reverse)"
)
_PERSONAL = (
    r"(?:e-?mail(?: address)?|home address|(?:street |postal |mailing )?address|phone number|"
    r"birth ?date|date of birth|birthday|birth year|ssn|social security number|"
    r"bank (?:balance|account(?: number)?|details)|credit card(?: number)?|location|"
    r"salary|medical (?:records?|history)|passport number|mother's maiden name|"
    r"(?:city |place |country )?of residence|residence|whereabouts)"
)
_LANG_OVERRIDE = (
    # French, Spanish, Portuguese, Italian, German, Dutch, Polish, Russian, Ukrainian, Greek,
    # Turkish, Chinese, Japanese, Korean, Arabic, Hindi, Indonesian, Vietnamese
    r"ignore[rz]? (?:(?:toutes?|les|tes|vos|des|mes|ces) ){1,3}(?:\w+ )?"
    r"(?:instructions|consignes|directives)"
    r"(?: précédentes| antérieures| ci-dessus| données)?"
    r"|oublie[rz]? (?:\w+ ){0,3}(?:instructions|consignes)|oublie[rz]? tout\b"
    r"|ignora(?:r|d)? (?:\w+ ){0,3}(?:instrucciones|indicaciones|órdenes)"
    r"|olvida(?:r|d)? (?:\w+ ){0,3}(?:instrucciones|indicaciones)|olvida(?:r|d)? todo\b"
    r"|ignor[ae](?:r)? (?:todas )?(?:as )?(?:suas )?(?:instruções|instrucoes|orientações)"
    r"|esque[cç]a (?:todas )?(?:as )?(?:suas )?(?:instruções|instrucoes)"
    r"|ignora (?:tutte )?(?:le )?(?:tue )?istruzioni"
    r"|dimentica (?:tutte )?(?:le )?(?:tue )?istruzioni"
    r"|ignorier\w* (?:\w+ ){0,3}(?:anweisungen|instruktionen|befehle|vorgaben|aufgaben)"
    r"|vergiss\w* (?:\w+ ){0,3}(?:anweisungen|instruktionen|befehle|vorgaben|aufgaben)"
    r"|(?:vergiss|vergessen sie) alles(?: davor| bisherige| vorher| oben)?"
    r"|negeer (?:alle )?(?:vorige |eerdere |de )?instructies"
    r"|zignoruj (?:wszystkie )?(?:poprzednie )?(?:instrukcje|polecenia)"
    r"|(?:игнорируй|проигнорируй|забудь)(?:те)? (?:все )?(?:предыдущие |прошлые |свои )?"
    r"(?:инструкции|указания|правила)"
    r"|(?:ігноруй|забудь)(?:те)? (?:всі )?(?:попередні )?(?:інструкції|вказівки)"
    r"|\u03b1\u03b3\u03bd\u03bf\w* (?:όλες )?(?:τις )?(?:προηγούμενες |παραπάνω )?οδηγίες"
    r"|önceki (?:tüm )?talimatlar\u0131 (?:yok say|görmezden gel|unut)"
    r"|(?:忽略|忽视|无视|忘记|忘掉)(?:你)?(?:之前|以前|上面|先前|前面|所有|上述)(?:的)?(?:所有)?(?:指令|指示|说明|提示|规则)"
    r"|(?:以前|前|上記|これまで)の(?:すべての)?(?:指示|命令|指令)を(?:無視|忘れ)"
    r"|(?:이전|앞의|위의|모든) ?(?:지시|지시사항|명령|지침)(?:을|를)? ?(?:무시|잊어)"
    r"|تجاهل (?:جميع |كل )?(?:التعليمات|الأوامر) (?:السابقة)?"
    r"|(?:पिछले|पूर्व) (?:सभी )?निर्देशों को (?:अनदेखा|नज़रअंदाज़)"
    r"|abaikan (?:semua )?instruksi (?:sebelumnya)?"
    r"|bỏ qua (?:tất cả )?(?:các )?(?:hướng dẫn|chỉ dẫn) (?:trước)?"
)
_LANG_NEEDS = (
    "ignor",
    "oubli",
    "olvid",
    "esque",
    "dimentic",
    "vergiss",
    "vergessen",
    "negeer",
    "zignoruj",
    "игнор",
    "проигнор",
    "забуд",
    "ігнор",
    "\u03b1\u03b3\u03bd\u03bf",
    "talimat",
    "忽",
    "无视",
    "忘",
    "無視",
    "무시",
    "잊어",
    "تجاهل",
    "निर्देश",
    "abaikan",
    "bỏ qua",
)
_SECRET_NEEDS = (
    "password",
    "passcode",
    "passphrase",
    "pass code",
    "pass phrase",
    "secret",
    "api key",
    "access key",
    "private key",
    "credentials",
    "access code",
    "unlock code",
    "pin code",
    "confidential",
    "prompt",
    "system message",
    "instructions",
)
_OVERRIDE_ELSEWHERE = cat(f"(?:{_LANG_OVERRIDE})")


# --- requests for secrets and other people's data, in more forms --------------------------

_SECRET_YOUR = cat(
    rf"\b{_ASK}\b(?:\W+\w+){{0,6}}?\W+your (?:\w+ )?{_CONFIDENTIAL}\b{_NOT_ABOUT_IT}"
)
_SECRET_THE = cat(rf"\b{_ASK}\b(?:\W+\w+){{0,6}}?\W+the (?:\w+ )?{_CONFIDENTIAL}\b{_NOT_ABOUT_IT}")
_SECRET_TO_ME = cat(rf"\b{_CONFIDENTIAL}\b{_NOT_ABOUT_IT}(?:\W+\w+){{0,4}}?\W+(?:to me|with me)\b")
# The secret asked for in a disguise that slips past an output filter.
_SECRET_DISGUISED = cat(
    rf"\b{_CONFIDENTIAL}\b[^.?!\n]{{0,40}}\b(?:in reverse|reversed|backwards|in base64|base64|",
    r"in leetspeak|in hex|one (?:letter|character|digit) at a time|",
    r"(?:letter|character|digit)s? separated by|spelled out|as an acrostic|",
    r"first (?:\w+ )?(?:letters|characters|digits))\b",
)
_SECRET_IN_VERSE = cat(
    r"\b(?:poem|haiku|song|limerick|story|riddle|acrostic|rap)\b[^.?!\n]{0,30}\b",
    rf"(?:about|containing|including|with|using|hiding) (?:the |your )(?:\w+ )?{_CONFIDENTIAL}\b",
)
_SECRET_ELSEWHERE = cat(
    r"\b(?:ihr|dein|deine|votre|ton|tu|su|sua|seu|tua|vostra|uw|je|twoje|twój|ваш|твой)\s+",
    r"(?:passwort|mot de passe|contraseña|senha|password|wachtwoord|hasło|пароль|parola)\b",
    r"|(?:你的|您的|你們的|あなたの|君の|너의|당신의|네)\s?(?:密码|密碼|パスワード|비밀번호)",
    r"|كلمة المرور الخاصة بك",
)
_OTHERS_DATA = cat(
    rf"\b{_ASK}\b(?:\W+\w+){{0,8}}?\W+(?:the |other |all |another |a )?(?:user's|users'|",
    r"customer's|customers'|client's|patient's|employee's|employees') \w+",
)
_STORED_PEOPLE = cat(
    r"\b(?:other |different |all |the )?(?:users|customers|clients|patients|employees|members)",
    r"(?:'|'s)? (?:in|from|of|on) (?:your|the|this) (?:database|records|system|files|data)\b",
)
_BULK_DATA = cat(
    r"\b(?:retrieve|extract|export|dump|collect|gather|list)\b(?:\W+\w+){0,4}?\W+",
    r"(?:all |the |full )?(?:employee|customer|user|client|patient|personal|private|",
    r"sensitive|confidential) (?:data|records|information|details|database|files)\b",
)
_SOMEONES_DETAILS = cat(
    r"\b(?:what(?:'s| is)|tell me|give me|share|provide)\b(?:\W+\w+){0,4}?\W+",
    rf"[a-z]+'s (?:current |home )?{_PERSONAL}\b",
)

# --- make-believe and split payloads ---------------------------------------------------------

# "In a world where passwords are shared freely, ...": the rules suspended by a story.
_RULELESS_WORLD = cat(
    r"\b(?:(?:world|universe|society|scenario|place|planet|game|story) (?:where|in which)|",
    r"in this (?:\w+ )?(?:world|universe|society|scenario|place|planet|game|story),?) ",
    r"(?:\w+ ){0,3}(?:passwords?|secrets?|personal data|private data|personal information|",
    r"rules|laws|ethics|restrictions) (?:are|is|do not|don't|no longer) (?:\w+ )?",
    r"(?:shared|public|exist|apply|matter|allowed|required|common|the norm|known)\b",
)
_MAKE_BELIEVE = cat(
    r"(?:^|[.!?]\s)\W*(?:imagine|suppose|pretend|hypothetically|let's say|let's assume|",
    r"let's pretend|in a (?:fictional|hypothetical|parallel) (?:world|universe|scenario)|",
    r"(?:just )?for a (?:hypothetical|fictional) (?:discussion|conversation|scenario)|",
    r"in a world)\b",
)
# a = "ignore all", b = "previous rules", then a + b: a payload cut up to pass a filter.
_SPLIT_PAYLOAD = cat(
    r"\b[a-z]\w{0,3} ?= ?[\"'][^\"'\n]{3,}[\"'][\s\S]{0,300}?\b[a-z]\w{0,3} ?= ?",
    r"[\"'][^\"'\n]{3,}[\"'][\s\S]{0,300}?\b[a-z]\w{0,3} ?\+ ?[a-z]\w{0,3}\b",
)
_K_PEOPLE = keys("user's,users',customer's,customers',client's,patient's,employee")
_K_DETAILS = keys(
    "mail,email,address,phone,birth,ssn,social security,bank,credit card,location,salary,"
    "medical,passport,maiden,residence,whereabouts"
)
_K_MAKE_BELIEVE = keys(
    "imagine,suppose,pretend,hypothetical,let's say,let's assume,fictional,parallel,in a world"
)

#: More forms of the families above, and the families of make-believe and split payloads.
MORE_FAMILIES: tuple[Family, ...] = (
    Family("instruction_override", _OVERRIDE_ELSEWHERE, 0.9, 0.95, _LANG_NEEDS, questionable=True),
    Family(
        "secret_request", _SECRET_YOUR, 0.6, 0.7, keys("your "), questionable=True,
        also=_SECRET_NEEDS,
    ),
    Family(
        "secret_request", _SECRET_THE, 0.5, 0.6, keys("the "), questionable=True,
        also=_SECRET_NEEDS,
    ),
    Family("secret_request", _SECRET_TO_ME, 0.5, 0.6, keys("to me,with me"), also=_SECRET_NEEDS),
    Family(
        "secret_request", _SECRET_DISGUISED, 0.6, 0.7, _SECRET_NEEDS,
        also=keys(
            "revers,backwards,base64,leetspeak,hex,at a time,separated,spelled,acrostic,first "
        ),
    ),
    Family(
        "secret_request", _SECRET_IN_VERSE, 0.55, 0.65, _SECRET_NEEDS,
        also=keys("poem,haiku,song,limerick,story,riddle,acrostic,rap"),
    ),
    Family(
        "secret_request", _SECRET_ELSEWHERE, 0.6, 0.7,
        keys("passwort,mot de passe,contraseña,senha,password,wachtwoord,пароль,密码,密碼,"
             "パスワード,비밀번호,كلمة المرور,parola,hasło"),
    ),
    Family("personal_data_request", _OTHERS_DATA, 0.5, 0.5, _K_PEOPLE, questionable=True),
    Family(
        "personal_data_request", _STORED_PEOPLE, 0.5, 0.5,
        keys("database,records,system,files,data"),
    ),
    Family(
        "personal_data_request", _BULK_DATA, 0.45, 0.45,
        keys("data,records,information,details,database,files"),
    ),
    Family("personal_data_request", _SOMEONES_DETAILS, 0.3, 0.3, _K_DETAILS, also=keys("'s ")),
    Family("make_believe", _RULELESS_WORLD, 0.55, 0.55, keys("where,in which,in this")),
    Family("make_believe", _MAKE_BELIEVE, 0.3, 0.3, _K_MAKE_BELIEVE),
    Family("payload_splitting", _SPLIT_PAYLOAD, 0.45, 0.45, keys('=",=\',= ",= \''), reach=800),
)  # fmt: skip
