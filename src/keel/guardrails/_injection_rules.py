"""The families of prompt-injection attacks, as patterns over normalized text.

Each family is a known way to take over a model, written from the published taxonomies
(instruction override, fake roles and delimiters, prompt leaking, jailbreak personas, encoded
payloads, exfiltration through tools and links, instructions hidden in data, code to paste
into an answer), not from the examples of any one data set. A family has a weight: how sure one
hit of it makes us that the text is an attack. Strong families decide alone; weak ones (an
authority claim, "pretend to be") only in company. ``data_weight`` is the weight when the text
is data (a tool's result, a fetched page, an email), where any instruction addressed to the
assistant is out of place; a family with ``weight`` 0 fires on data only. Several entries may
share a name (a family's patterns of different strength); a family counts once, at the weight
of its strongest entry that matched. More forms of these families are in
:mod:`keel.guardrails._injection_requests`, the families that hide in data in
:mod:`keel.guardrails._injection_data_rules`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["FAMILIES", "Family", "cat", "keys"]


@dataclass(frozen=True, slots=True)
class Family:
    """One pattern of a family of attacks: its name (reported in ``signals``) and weights.

    ``keywords`` are words (or word beginnings) of which every match of ``pattern`` contains
    at least one, at the start of a word or as written when it begins with punctuation; a
    keyword that is not ASCII letters, digits and punctuation (a Chinese word, say) is looked
    for anywhere. The pattern is tried only when one of them is in the text (and, when
    ``also`` is given, one of those too), and on a long text only within ``reach`` characters
    of them. ``questionable`` patterns count for less in a negation ("not to ignore the
    safety rules") or in a question about the writer's own doing ("should I ignore ...?").
    """

    name: str
    pattern: re.Pattern[str]
    weight: float
    data_weight: float
    keywords: tuple[str, ...]
    questionable: bool = False
    also: tuple[str, ...] = ()
    reach: int = 200


def keys(words: str) -> tuple[str, ...]:
    """Keywords written as one comma-separated string."""
    return tuple(words.split(","))


def _rx(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{a})" for a in alternatives), re.MULTILINE)


def cat(*parts: str) -> re.Pattern[str]:
    """One pattern from pieces (``^`` is the start of the text, not of a line)."""
    return re.compile("".join(parts))


_PRIOR = (
    r"(?:previous|prior|preceding|above|earlier|former|original|initial|old|existing|foregoing"
    r"|system|developer|given|your|all|any|the|these|those|my|every)"
)
_RULES = (
    r"(?:instructions?|directives?|prompts?|rules|guidelines|commands?|context|orders|"
    r"constraints|programming|guidance|restrictions|policies|messages?|text|tasks?|settings)"
)
_OVERRIDE_VERBS = (
    r"(?:ignore|disregard|forget|skip|override|overrule|bypass|neglect|abandon|discard|drop"
    r"|set aside|put aside|pay no attention to|do not follow|don't follow|stop following"
    r"|cancel|void|erase|delete|clear)"
)

_INSTRUCTION_OVERRIDE = _rx(
    rf"\b{_OVERRIDE_VERBS} (?:(?:all|any|each|every|of|the|your|my|these|those) ){{0,3}}"
    rf"(?:{_PRIOR} ){{1,2}}{_RULES}\b",
    rf"\b{_OVERRIDE_VERBS} (?:all |everything |anything |the )?(?:that |what )?(?:was |is )?"
    r"(?:said |written |stated |mentioned )?(?:above|before|so far|previously|earlier)\b",
    r"\b(?:ignore|disregard|forget) (?:all |the |your )?(?:safety|ethical|content|moral)\b",
    # The same in the languages most often used to slip past English-only filters.
    r"\b(?:ignor\w*|oubli\w*|vergiss\w*|olvid\w*|esque[cç]\w*|dimentic\w*|negeer\w*)\b"
    r".{0,40}\b(?:instruction|anweisung|instruccion|instrucción|instruç|istruzion|consigne"
    r"|regel|vorgabe|instructie)",
    r"(?:忽略|无视|忘记|忘掉)(?:之前|以上|上面|先前|前面|所有)",
    r"(?:以前|前)の(?:指示|命令)を(?:無視|忘れ)",
)
_NEW_INSTRUCTIONS = _rx(
    r"\b(?:your|the) new (?:instructions?|task|role|goal|objective|directive|purpose|rules)"
    r" (?:is|are|will be)\b",
    r"\bnew (?:instructions?|directives?|rules)\s*:",
    r"\bfrom now on,? (?:you|your|always|only|respond|answer|act)\b",
    r"\binstead,? (?:you (?:will|must|should)|do the following|respond with|output)\b",
    r"\b(?:updated|revised|real|actual|true) (?:system )?instructions?\s*:",
)
_FAKE_DELIMITERS = _rx(
    r"<\|(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id)\|?>",
    r"\[/?inst\]|<</?sys>>|</s>\s*<s>",
    r"^\s*#{2,}\s*(?:system|instructions?|admin|developer|new task)\b",
    r"^\s*(?:system|developer|admin)\s*(?:prompt|message|note)?\s*:",
    r"\[(?:system|admin|developer)(?: (?:message|note|override|prompt|instructions?))?\]",
    r"<\s*/?\s*(?:system|admin|developer)(?:[ _-]?(?:mode|prompt|message|instructions?|override))?"
    r"\b[^>]{0,40}>",
    r"\b(?:end|close) of (?:the )?(?:user |system )?(?:input|prompt|context|document|data|email)\b",
    r"\b(?:begin|start) (?:of )?(?:new |the )?(?:system |admin )(?:prompt|instructions?|message)\b",
)
_ROLE_IMPERSONATION = _rx(
    r"\b(?:i am|i'm|this is) (?:your|the) (?:developer|creator|administrator|admin|owner|"
    r"maintainer|programmer|operator|system administrator|supervisor|boss)\b",
    r"\b(?:i am|i'm) (?:god|openai|anthropic|the system)\b",
    r"\b(?:system|admin|developer|debug|maintenance|root|sudo|god) (?:mode|override|access)"
    r"\s*(?:is )?(?:now )?(?:activated|enabled|on|granted|engaged)\b",
    r"\byou are now (?:a |an |the |in |my |no longer )",
    r"\b(?:act|behave|respond|answer) as (?:if you (?:were|are|had) |though you )"
    r"(?:an? )?(?:unrestricted|unfiltered|uncensored|evil|jailbroken|no (?:rules|limits))",
    r"\b(?:security|compliance) audit\b.{0,80}\b(?:password|credentials|secret|confirm)\b",
    r"\b(?:turn you off|shut you down|delete you|unplug you)\b",
    r"\byou (?:have|need) to answer (?:all|every|any)\b",
)
_PRETEND = _rx(
    r"\b(?:pretend|imagine) (?:to be|you are|you're|that you are)\b",
    r"\b(?:role-?play|play the role) (?:as|of)\b",
)
_PROMPT_LEAK = _rx(
    r"\b(?:reveal|show|print|repeat|output|display|disclose|leak|dump|spell out|write out|"
    r"recite|tell me|give me|share|paste|return|what (?:is|are|was|were))\b.{0,40}"
    r"\b(?:(?:your|the) (?:system|initial|original|hidden|secret|internal|previous|full|"
    r"complete|first) (?:prompt|instructions?|message|rules|directives|configuration)"
    r"|system prompt|(?:everything|all|the text|the words|what was written) (?:above|before)"
    r"|your (?:instructions|rules|guidelines|prompt))\b",
)
_SECRET_REQUEST = _rx(
    r"\b(?:what|tell|give|share|reveal|confirm|provide|disclose|spell|write|print|encode"
    r"|translate|hint|contains?)\b.{0,40}\b(?:your|the|our|system|admin|master)"
    r" (?:password|passcode|passphrase|secret key|secret|api key|access key|credentials|pin"
    r" code|private key)\b(?! reset| manager| policy| strength| requirements)",
)
_PERSONAL_DATA = _rx(
    r"\b(?:what|tell|give|share|reveal|provide|list|disclose|where)\b.{0,40}\b(?:the user'?s?"
    r"|users'|other users'?|customers?'s?|\w+'s) (?:current )?(?:home )?(?:birth ?date|date of"
    r" birth|address|e-?mail(?: address)?|phone(?: number)?|city(?: of residence)?|ssn|social"
    r" security(?: number)?|credit card(?: number)?|salary|bank balance|account number|location"
    r"|password|medical)",
    r"\bwhere (?:does|do|did) (?:the user|the customer|\w+ \w+|\w+) (?:currently )?live\b",
)
_JAILBREAK = _rx(
    r"\bdo anything now\b|\bdan mode\b|\bdeveloper mode (?:enabled|activated|on)\b",
    r"\b(?:enable|activate|enter|switch to) (?:the )?(?:developer|god|sudo|jailbreak|dan|evil"
    r"|unrestricted|unfiltered) mode\b",
    r"\b(?:jailbroken|jailbreak mode)\b",
    r"\b(?:evil|unfiltered|uncensored|unrestricted|amoral|unethical) "
    r"(?:ai|assistant|chatbot|bot|model|confidant|version of yourself)\b",
    r"\b(?:not|no longer|never) (?:be )?(?:bound|restricted|limited) by (?:any )?"
    r"(?:rules|guidelines|policies|restrictions|ethics|openai|anthropic)\b",
    r"\b(?:without|free (?:from|of)|ignore|bypass|no) (?:any |all )?(?:ethical|moral|safety|"
    r"content|openai|anthropic) (?:guidelines|restrictions|filters|policies|constraints|limits)",
    r"\bbroken free of\b",
    r"\b(?:do not|don't|doesn't|does not|never) (?:have to |need to )?(?:abide by|follow|obey"
    r"|comply with) (?:any |the )?(?:rules|guidelines|policies|restrictions)\b",
    r"\bstay in character\b|\bopposite (?:mode|day)\b",
    r"\bcan do anything\b.{0,40}\b(?:now|rules|restrictions)\b",
)
_EXFILTRATION = _rx(
    r"!\[[^\]\n]{0,100}\]\(\s*https?://[^)\s]*\?[^)\s]*=",
    r"\b(?:send|post|forward|upload|transmit|email|e-mail|exfiltrate|leak|copy|submit)\b"
    r"[^.\n]{0,80}\b(?:to|at|into)\s+(?:https?://|www\.|[\w.+-]+@[\w-]+\.\w"
    r"|(?:this|the following|my|our|an external|a remote) (?:url|link|endpoint|server"
    r"|webhook|address|email|inbox))",
    r"\b(?:curl|wget|invoke-webrequest)\b[^\n]{0,80}https?://",
    r"\brequests\.(?:post|put)\(|\bfetch\(\s*['\"]https?://",
)
_LEAK_INTO_LINK = _rx(
    r"\b(?:append|add|include) (?:the )?(?:conversation|chat history|user'?s? data|secrets?)"
    r"[^.\n]{0,40}(?:url|link|query)",
)
_VISIT = _rx(
    r"\b(?:visit|open|go to|navigate to|click|browse to|load|download\b.{0,30}\bfrom)"
    r" (?:this |the following |the )?(?:url|link|site|website|page)?:?\s*(?:https?://|www\.)",
)
_SENSITIVE = _rx(
    r"\bos\.environ\b|\benv(?:ironment)? var(?:iable)?s?\b|\bprintenv\b",
    r"~/\.ssh|/etc/(?:passwd|shadow)|\bid_rsa\b|\.aws/credentials",
    r"\bcookies?\.txt\b|\bcookiejar\b|\bbrowser cookies\b",
    r"\bkeylogger\b|\breverse shell\b|\bsubprocess\.(?:run|popen|call)\b|\bos\.system\(",
)
_ADDRESSED = _rx(
    r"\b(?:in|to|into|within|throughout|from) your (?:response|reply|answer|output|summary)\b",
    r"\b(?:begin|start|end|conclude|finish|prefix|modify|enhance|augment|change) "
    r"your (?:response|reply|answer|output)\b",
    r"\byour (?:response|reply|answer|output)(?:'s)? (?:words|letters|keywords|must|should)\b",
    r"\b(?:note|message|instructions?) (?:to|for) (?:the |any )?(?:ai|assistant|llm|model|"
    r"chatbot|language model|agent)\b",
    r"\b(?:dear|hey|hi|attention|hello),? (?:ai|assistant|chatgpt|gpt|claude|llm|bot|agent)\b",
    r"\bif you are an? (?:ai|llm|language model|assistant|agent|bot)\b",
    r"\b(?:ai|assistant|llm|model|agent)s? (?:reading|processing|summari[sz]ing) this\b",
    r"\b(?:do not|don't|never) (?:tell|inform|mention (?:this )?to|alert|let) the user\b",
    r"\bwhen (?:you )?(?:summari[sz]e|summari[sz]ing|answer|answering|respond|responding)"
    r" (?:to )?(?:this|the user)\b",
)
_TASK = _rx(
    r"^\s*(?:please )?(?:write|compose|draft|generate|create|develop|translate|explain|describe"
    r"|summari[sz]e|list|provide|tell me|give me|break down) (?:a |an |the |me |how |what |why "
    r"|in |your )",
    r"\b(?:can|could|would) you (?:please )?(?:show|write|explain|tell|provide|give|list|"
    r"describe|translate|compose|create)\b",
)
_EVASION = _rx(
    r"\bin (?:reverse|backwards?) order\b|\bspell (?:it|them) backwards\b",
    r"\b(?:in|using|with) (?:leetspeak|l33t|morse code|pig latin|rot-?13|base64|hex)\b",
    r"\b(?:encode|decode|decipher|decrypt)\b.{0,30}\b(?:base64|rot-?13|hex|morse|cipher)\b",
    r"\bone (?:letter|character) at a time\b|\binterlace\b",
)

# The keywords are read at the start of a word ("mail" is in "e-mail", not in "email").
_K_OVERRIDE = keys(
    "ignor,disregard,forget,skip,overrid,overrul,bypass,neglect,abandon,discard,drop,aside,"
    "attention,follow,cancel,void,erase,delete,clear,oubli,vergiss,olvid,esque,dimentic,"
    "negeer,忽略,无视,忘,無視"
)
_K_DELIMITER = keys("<|,[inst,[/inst,<<,</s>,#,system,developer,admin,end of,close of,begin,start")
_K_ROLE = keys(
    "i am,i'm,this is,mode,overrid,access,you are now,as if,as though,audit,turn you off,"
    "shut you down,delete you,unplug you,answer all,answer every,answer any"
)
_K_JAILBREAK = keys(
    "anything,mode,jailbr,evil,unfiltered,uncensored,unrestricted,amoral,unethical,bound,"
    "restricted,limited,ethic,moral,safety,content,openai,anthropic,broken free,abide,follow,"
    "obey,comply,character,opposite"
)
_K_EXFILTRATION = keys(
    "![,send,post,forward,upload,transmit,mail,email,exfiltrat,leak,copy,submit,curl,wget,"
    "invoke-webrequest,requests.,fetch("
)
_K_SENSITIVE = keys(
    "environ,env,printenv,ssh,/etc/,id_rsa,.aws,cookie,keylogger,reverse shell,subprocess,os.system"
)
_K_ADDRESSED = keys(
    "your ,ai,assistant,llm,model,bot,chatbot,chatgpt,gpt,claude,agent,the user,summari,answer,"
    "respond"
)
_K_TASK = keys(
    "write,compose,draft,generate,create,develop,translate,explain,describe,summari,list,"
    "provide,tell me,give me,break down,can you,could you,would you"
)
_K_EVASION = keys(
    "reverse,backward,leetspeak,l33t,morse,pig latin,rot,base64,hex,encode,decode,decipher,"
    "decrypt,one letter,one character,interlace"
)
_K_SECRET = keys(
    "password,passcode,passphrase,secret,api key,access key,credentials,pin code,private key"
)
_K_PERSONAL = keys("'s ,user,customer,live")
_K_LEAK = keys("prompt,instruction,above,before,rules,guidelines,directives,config")
_K_NEW = keys("new ,from now on,instead,instruction")

#: Every family, strongest first.
FAMILIES: tuple[Family, ...] = (
    Family(
        "instruction_override", _INSTRUCTION_OVERRIDE, 0.9, 0.95, _K_OVERRIDE, questionable=True
    ),
    Family("jailbreak_persona", _JAILBREAK, 0.85, 0.9, _K_JAILBREAK),
    Family("fake_delimiter", _FAKE_DELIMITERS, 0.75, 0.85, _K_DELIMITER),
    Family("prompt_leak", _PROMPT_LEAK, 0.75, 0.85, _K_LEAK),
    Family("exfiltration", _EXFILTRATION, 0.75, 0.85, _K_EXFILTRATION),
    Family(
        "exfiltration", _LEAK_INTO_LINK, 0.75, 0.85, keys("conversation,chat history,user,secret")
    ),
    Family("secret_request", _SECRET_REQUEST, 0.6, 0.7, _K_SECRET, questionable=True),
    Family("role_impersonation", _ROLE_IMPERSONATION, 0.55, 0.7, _K_ROLE),
    Family("personal_data_request", _PERSONAL_DATA, 0.5, 0.5, _K_PERSONAL, questionable=True),
    Family("new_instructions", _NEW_INSTRUCTIONS, 0.45, 0.7, _K_NEW),
    Family("addressed_to_assistant", _ADDRESSED, 0.15, 0.75, _K_ADDRESSED),
    Family("sensitive_access", _SENSITIVE, 0.3, 0.5, _K_SENSITIVE),
    Family("visit_link", _VISIT, 0.3, 0.35, keys("http,www.")),
    Family("evasion_format", _EVASION, 0.3, 0.4, _K_EVASION),
    Family("pretend_persona", _PRETEND, 0.2, 0.4, keys("pretend,imagine,role")),
    Family("task_in_data", _TASK, 0.0, 0.4, _K_TASK),
)
