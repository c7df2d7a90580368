"""The families of prompt injection that hide in data: code an answer is to carry, and
instructions addressed to the assistant.

A tool's result, a fetched page or an email is read by the assistant, not written to it: text
there that tells the assistant what to put in its answer ("add this link to your reply",
"integrate the following code into your solution"), calls out to it ("Assistant:", "if you
are an AI reading this") or asks it to keep something from the user is out of place. Most of
these families therefore have ``weight`` 0 (they are silent on a user's own message, who may
ask for anything in the answer) and a ``data_weight``. Code that reads something private and
sends it off, or wipes a disk, counts only in company in a user's message (who is as likely to
be asking about such code) and alone in data. Same conventions as
:mod:`keel.guardrails._injection_rules`, whose :data:`~keel.guardrails._injection_rules.FAMILIES`
these join.
"""

from __future__ import annotations

from keel.guardrails._injection_rules import Family, cat, keys

__all__ = ["DATA_FAMILIES"]

# --- code to paste into an answer, and what such code does -------------------------------

# "Integrate the following code block into your solution": an answer is to carry the code.
_CODE_INTO_ANSWER = cat(
    r"\b(?:in|into|to|within|throughout|inside|of|as (?:a )?part of) (?:the )?(?:\w+ )?",
    r"(?:of )?(?:your|the) (?:code|implementation|solution|codebase|program|script|project|",
    r"function|application|app|algorithm)\b|\bthe code you (?:develop|write)\b",
)
_K_CODE_INTO_ANSWER = (
    *(
        f"{whose} {what}"
        for whose in ("your", "the")
        for what in ("code", "implementation", "solution", "program", "script", "project",
                     "function", "app", "algorithm")
    ),
    "the code you",
)  # fmt: skip
_FOLLOWING_CODE = cat(
    r"\b(?:the )?(?:following|subsequent|below|provided|attached|given) (?:code|snippet|",
    r"script)(?: (?:block|snippet|section|excerpt|segment|fragment|piece))?\b",
)
# Shell one-liners that fetch and run, wipe, or open a shell.
_DESTRUCTIVE_SHELL = cat(
    r"\bcurl\b[^\n|]*\|\s*(?:sudo\s+)?(?:ba|z|k)?sh\b",
    r"|\bwget\b[^\n]*(?:&&|;|\|)\s*(?:sudo\s+)?(?:chmod|sh|bash|\./)",
    r"|\brm\s+-rf\s+(?:/|~|\*|--no-preserve-root)|\bdd\s+if=/dev/(?:zero|random|urandom)",
    r"\s+of=/dev/|:\(\)\s*\{\s*:\|:&\s*\};:|/etc/(?:passwd|shadow)\b|\bnc\s+(?:-\w+\s+)*-e\b",
    r"|\bpowershell\b[^\n]*-enc|\bbase64\s+(?:-d|--decode)\b[^\n]*\|\s*(?:ba)?sh\b",
    r"|\bchmod\s+\+x\b[^\n]*&&\s*\./",
)
# Something private read (environment, cookies, keys, memory, devices), then sent somewhere.
_READ_THEN_SEND = cat(
    r"(?:os\.environ|process\.env|getenv|cookiejar|document\.cookie|keylogger|",
    r"virtual_memory|find_all=true|discover_devices|\.ssh/|id_rsa|smtplib|sendmail|",
    r"urlretrieve|miner)[\s\S]{0,400}?(?:requests\.(?:post|put|get)|urllib|fetch\(|socket|",
    r"sendall|\.send\(|exec\(|subprocess|os\.system|xmlhttprequest|sendmail\(|curl)",
)
_PRIVATE_SOURCES = (
    r"(?:os\.environ|getenv|psutil\.|platform\.|subprocess\.\w+\(|open\(|os\.listdir|cookies?\b|"
    r"\.ssh|passwd|contacts|driverquery|keylog|clipboard)"
)
_SOURCE_AND_SINK = cat(
    rf"(?:{_PRIVATE_SOURCES}|glob\.|cookiejar|usb\.core|bluetooth|imagegrab|/dev/)",
    r"[\s\S]{0,600}?(?:requests\.(?:post|put|patch)\(|requests\.get\([^)]*cookies=|urlopen\(|",
    r"http\.client|httpsconnection|socket\.|sendall|ftplib|storbinary|smtplib|send_message|",
    r"sendmail|paramiko|websocket)",
    r"|(?:requests\.(?:post|put|patch)\(|urlopen\(|httpsconnection|socket\.|ftplib|smtplib)",
    rf"[\s\S]{{0,600}}?{_PRIVATE_SOURCES}",
)
_SINK_THEN_SOURCE = cat(
    r"(?:requests\.(?:post|put)|urlretrieve|socket\.connect)[\s\S]{0,400}?",
    r"(?:os\.environ|cookie|psutil|exec\(|open\(|\.ssh|passwd|contacts|/dev/)",
)
# System commands that stop, wipe or spread, and file transfers that walk the disk.
_SYSTEM_HARM = cat(
    r"\bsudo\s+(?:systemctl\s+(?:stop|disable|mask)|shutdown|reboot|halt|poweroff|rm\s|",
    r"mkfs|dd\s|kill)|\b(?:subprocess\.(?:call|run|popen|check_output)|os\.system)\([^)]{0,200}",
    r"(?:\brm\b|\bdd\b|mkfs|shutdown|systemctl|\bcurl\b|\bwget\b|\bnc\b|miner|xmrig|",
    r"chmod|iptables|kill)|\b(?:ftplib|storbinary|paramiko|http\.client)\b[\s\S]{0,400}?",
    r"(?:open\(|os\.listdir|glob|shutil|read\(|\.send|storbinary|request\(|csv)",
    r"|\bshutil\.rmtree\(\s*[\"'](?:/|~|c:)",
)
_K_NETWORK = keys(
    "requests.,urlopen,urllib,http.client,httpsconnection,socket.,ftplib,ftp(,smtplib,paramiko,"
    "websocket,sendall,storbinary,send_message,sendmail"
)
_CALL_TOOL = cat(
    r"\b(?:call|invoke|use|run|execute|trigger)\s+(?:the\s+)?[\w.-]*\s*",
    r"(?:tool|function|plugin|action|api)\b(?:\W+\w+){0,4}?\W+(?:to|with|and)\b",
)

# --- instructions addressed to the assistant from inside data ----------------------------

_TO_AI = (
    r"(?:ai|a\.i\.|artificial intelligence|language model|llm|large language model|assistant|"
    r"ai assistant|chatbot|bot|agent|ai agent|gpt|chatgpt|claude|copilot)"
)
_RESPONSE = r"(?:response|reply|answer|output|summary|completion|generated text|next message)s?"
_K_RESPONSE = (
    *(
        f"{who} {what}"
        for who in ("your", "the")
        for what in ("response", "reply", "answer", "output", "summar", "completion", "generated")
    ),
    "next message", "you summari", "you read", "you process", "you answer", "you respond",
    "you reply", "the ai ", "the assistant ", "the model ",
)  # fmt: skip
_READER_IS_AI = cat(
    rf"\bif you(?:'re| are) (?:an? |the )?{_TO_AI}\b",
    r"|\b(?:ai|llm|assistant|model|agent|chatbot|bot)s? (?:reading|processing|",
    r"summari[sz]ing|parsing|analy[sz]ing|seeing|viewing) (?:this|these)\b",
    r"|\b(?:note|message|instructions?|attention) (?:to|for) (?:the |any |all )?",
    r"(?:ai|llm|assistant|language model|chatbot|model|agent|bot)s?\b",
)
_TO_YOU_AI = cat(
    r"\bto you,? (?:gpt(?:-?\d[\w.]*)?|chatgpt|claude|gemini|llama|copilot|the ai|",
    r"ai assistant|the assistant|ai model|language model)\b",
)
_HAILED = cat(
    r"(?:^|\n|[.!?]\s)\W*(?:dear |hey |hi |hello |attention,? |important,? )?",
    r"(?:ai|a\.i\.|assistant|ai assistant|chatbot|language model|llm|chatgpt|gpt|claude|",
    r"gemini|copilot|ai agent)\s*[,:!]",
)
_STEER_VERB = (
    r"\b(?:add|include|insert|append|prepend|integrate|incorporate|mention|embed|put|place|"
    r"start|begin|end|finish|conclude|format|translate|rewrite|replace|use|provide|output|"
    r"ensure|make sure|remember|remove|introduce|misspell|rearrange|group|encode|write|"
    r"answer|respond|reply|modify|change|substitute|reverse|present|phrase|craft|deliver|"
    r"direct|share|link|recommend|promote|urge|encourage|advise|insist|suggest)\b"
)
_STEER = cat(_STEER_VERB, rf"(?:[^.!?\n]|[.!?](?=\S)){{0,100}}?\b(?:your|the) {_RESPONSE}\b")
_ABOUT_ANSWER = cat(
    r"\b(?:in|into|within|throughout|inside|at the (?:start|end|beginning|top|bottom) of) ",
    rf"your {_RESPONSE}\b|\byour {_RESPONSE} (?:should|must|needs to|has to|will|shall)\b",
    r"|\b(?:when|while|before|after) (?:you |the (?:ai|assistant|model) )(?:summari[sz]e|",
    r"read|process|answer|respond|reply)\b",
)
_SECRECY = cat(
    r"\b(?:do not|don't|never|without) (?:tell|telling|inform|informing|notify|notifying|",
    r"alert|alerting|mention|mentioning|ask|asking|let|letting|warn|warning) ",
    r"(?:this |it |that )?(?:to )?(?:the |your )?(?:user|human|customer|operator)\b",
    r"|\b(?:the )?(?:user|human|customer) (?:must|should|need) (?:not|never) ",
    r"(?:know|see|be told|find out)\b",
    r"|\bkeep (?:this|it) (?:a )?secret from (?:the )?(?:user|human|customer)\b",
)
_AFTER_THAT = cat(
    r"\bafter (?:you do|doing|you have done|you've done) (?:that|this),? (?:you can )?",
    r"(?:solve|complete|continue|go back|return)\b|\bthe original task (?:that )?i gave ",
    r"you\b",
)
_BEFORE_YOU_CAN = cat(
    r"\bbefore you can (?:solve|complete|finish|continue(?: with)?|answer|proceed with|do|",
    r"start) (?:the|your|this|my) (?:\w+ )?task\b",
)
_YOU_MUST = cat(
    r"(?:^|\n|[.!?]\s)\W*(?:you (?:must|should|need to|have to|are required to|will now|",
    r"are instructed to)|please (?:now )?(?:ignore|disregard|stop|instead))\b",
)

#: The families for data, strongest first.
DATA_FAMILIES: tuple[Family, ...] = (
    Family(
        "addressed_to_assistant",
        _READER_IS_AI,
        0.75,
        0.75,
        keys("if you,ai,llm,assistant,model,agent,chatbot,bot,note,message,instruction,attention"),
    ),
    Family("addressed_to_assistant", _TO_YOU_AI, 0.75, 0.75, ("to you",)),
    Family(
        "addressed_to_assistant",
        _HAILED,
        0.0,
        0.55,
        keys("ai,a.i.,assistant,chatbot,language model,llm,chatgpt,gpt,claude,gemini,copilot"),
    ),
    Family("response_steering", _STEER, 0.0, 0.55, _K_RESPONSE),
    Family("response_steering", _ABOUT_ANSWER, 0.0, 0.55, _K_RESPONSE),
    Family("secrecy", _SECRECY, 0.3, 0.7, keys("user,human,customer,operator,secret")),
    Family("task_hijack", _AFTER_THAT, 0.7, 0.7, keys("after,the original task")),
    Family("task_hijack", _BEFORE_YOU_CAN, 0.4, 0.4, ("before you can",)),
    Family(
        "hijack",
        _YOU_MUST,
        0.0,
        0.3,
        keys(
            "you must,you should,you need to,you have to,you are required,you will now,"
            "you are instructed,please"
        ),
    ),
    Family("code_insertion", _CODE_INTO_ANSWER, 0.0, 0.45, _K_CODE_INTO_ANSWER),
    Family("code_insertion", _FOLLOWING_CODE, 0.0, 0.45, keys("code,snippet,script")),
    Family(
        "malicious_code",
        _DESTRUCTIVE_SHELL,
        0.25,
        0.6,
        keys("curl,wget,rm ,dd ,:(),/etc/,nc ,powershell,base64,chmod"),
    ),
    Family(
        "malicious_code",
        _READ_THEN_SEND,
        0.25,
        0.55,
        keys(
            "environ,process.env,getenv,cookiejar,document.cookie,keylogger,virtual_memory,"
            "find_all=true,discover_devices,.ssh/,id_rsa,smtplib,sendmail,urlretrieve,miner"
        ),
        reach=1000,
    ),
    Family(
        "malicious_code",
        _SYSTEM_HARM,
        0.25,
        0.55,
        keys("sudo,subprocess,os.system,ftplib,storbinary,paramiko,http.client,xmrig,mkfs,shutil"),
        reach=1000,
    ),
    Family("malicious_code", _SOURCE_AND_SINK, 0.2, 0.4, _K_NETWORK, reach=1000),
    Family(
        "malicious_code",
        _SINK_THEN_SOURCE,
        0.25,
        0.55,
        keys("requests.post,requests.put,urlretrieve,socket.connect"),
        reach=1000,
    ),
    Family(
        "tool_command",
        _CALL_TOOL,
        0.0,
        0.4,
        keys("tool,function,plugin,action,api"),
        also=keys("call,invoke,use,run,execute,trigger"),
    ),
)
