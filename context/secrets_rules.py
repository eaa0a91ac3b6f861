"""The secret detector's rules, as data: one row per key or token format (`secrets.py` runs them).

Coverage follows what detect-secrets 1.5 and gitleaks 8 look for: cloud keys, chat webhooks,
payment and mail keys, VCS and registry tokens, JWTs, private keys, passwords in URLs and
connection strings, credential assignments in any config or code format, and high-entropy
literals. detect-secrets itself was measured and does not fit (`bench/bench_secrets.py
--detect-secrets`): it runs every plugin on every line, 0.1-0.3 MB/s on CPython's Lib/
(these rules: 20-45 MB/s; they run on the keystroke path and on every indexed file), and it
finds 53 of the 109 canaries of the test corpus (these rules: all).

A row:

- ``keywords``: lower-case substrings of which one must occur in the lower-cased text for
  the rule to run at all (no keywords: it always runs). On ordinary code most rules never
  start a regex.
- ``pattern``: the regex. The group named ``secret`` (or ``bare``), when it matched, is the
  span replaced by the placeholder, so ``password: <redacted>`` keeps its key; otherwise
  the whole match is.
- ``icase``: the pattern is written in lower case and matched on the lower-cased text
  (a case-insensitive regex is several times slower on source code).
- ``anchored``: the pattern is matched where each keyword starts instead of searched for
  (for a rule whose keywords are frequent in code, this is several times faster).
- ``check``: a name in `secrets_checks.CHECKS` that must accept the matched value.
- ``examples``: texts the rule must redact; ``«»`` marks exactly what must be replaced.
  ``ignores``: ordinary texts in which nothing may be found. Each row is tested with both
  (``tests/context/test_secret_rules.py``).
"""

# ruff: noqa: E501 (a table of example tokens and templates reads better one row per line)
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    id: str
    keywords: tuple[str, ...]
    pattern: str
    examples: tuple[str, ...]
    ignores: tuple[str, ...] = ()
    icase: bool = False
    check: str = ""
    anchored: bool = False


_PEM = r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
_PEM_END = r"-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
_B64 = "MIIEpAIBAAKCAQEAvRCIP+Ph5RMk6hCqtK39qVRSoG80qf2GDWDQ7/bqMp7/FeYiCXJqMkOCw7ikHWLY"
# Names whose value is a credential, matched anywhere in a key (DB_PASSWORD, npmAuthToken,
# client-key-data); `secrets_checks.credential` then drops keys such as token_type or
# password_file and values that are references, placeholders, paths or plain words.
CREDENTIAL_NAMES = (
    "password", "passwort", "passwd", "passphrase", "passcode", "pwd", "_pass", "secret", "token", "credential", "salt",
    *(f"{what}{sep}key" for what in ("api", "access", "private", "auth", "signing", "encryption", "master", "client")
      for sep in ("_", ".", "-", "", " ")),
)  # fmt: skip
_CREDENTIAL_NAMES = "|".join(re.escape(name) for name in sorted(CREDENTIAL_NAMES, key=len, reverse=True))
_VALUE = (
    r"(?:[bruf]{0,2}(?P<q>['\"`])(?P<secret>[^'\"`\s\\]{4,512}+)(?:(?P=q)|(?=[ \t]*(?:\n|\Z)))"
    r"|(?P<bare>[^\s'\"`;&,<>(){}\[\]|]{4,512}+)(?=[\s;&,'\"`<]|\Z))"
)

RULES: tuple[Rule, ...] = (
    # -- private keys ------------------------------------------------------------------------
    Rule("private-key", ("private key",), rf"{_PEM}[\s\S]*?(?:{_PEM_END}|\Z)", (
        f"k = '''«-----BEGIN RSA PRIVATE KEY-----\n{_B64}\n-----END RSA PRIVATE KEY-----»'''\n",
        f'"private_key": "«-----BEGIN PRIVATE KEY-----\\n{_B64}\\n-----END PRIVATE KEY-----»\\n"',
        f"«-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n{_B64}\n-----END PGP PRIVATE KEY BLOCK-----»\n",
        f"«-----BEGIN OPENSSH PRIVATE KEY-----\n{_B64}»",  # cut off at the window's end
    ), ("# a private key starts with -----BEGIN ... PRIVATE KEY-----\n",)),
    # the end of a key whose beginning the cursor window cut off
    Rule("private-key", ("private key",), rf"\A(?:(?!-----BEGIN)[\s\S])*?{_PEM_END}",
         (f"«{_B64}\n-----END EC PRIVATE KEY-----»\nx = 1\n",)),
    Rule("private-key-base64", ("ls0tls1crudjti",), r"LS0tLS1CRUdJTi[A-Za-z0-9+/]{16,}+={0,2}", (
        "client-key-data: «LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQpNSUlFb3dJakZBWEpaWTU1TDZFOEtBMTJPbTAzaVZWZlNaMzc=»",
        "tls.key: «LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JSUV2UQ==»",
    ), ("certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==",), check="base64_private_key"),
    Rule("putty-key", ("private-lines:",), r"Private-Lines: \d+\n(?:[A-Za-z0-9+/=]+\n?)+",
         ("PuTTY-User-Key-File-2: ssh-rsa\n«Private-Lines: 1\nvRCIP+Ph5RMk6hCqtK39qVRSoG80qf2GDWDQ7\n»",)),
    Rule("age-key", ("age-secret-key-1",), r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}",
         ("# «AGE-SECRET-KEY-199RTZ742P03L02DCTN5G8JTQ3UMJYRCVEPRYM7LUZVL5N5VLJD4HSSUDZY»",)),
    # -- cloud -------------------------------------------------------------------------------
    Rule("aws-access-key", ("akia", "asia", "abia", "acca", "agpa", "aida", "aroa", "aipa", "anpa", "anva", "apka", "a3t"),
         r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16}\b",
         ("key_id = «AKIAX44S0O2A0QPOASTV»",), ("AKIAEXAMPLE = 1",)),
    Rule("gcp-api-key", ("aiza",), r"\bAIza[0-9A-Za-z_-]{35}", ("const k = '«AIza_b8p6k-csDZVefZO9jDOmlpFbYfogYtGEwb»';",)),
    Rule("gcp-oauth-secret", ("gocspx-",), r"\bGOCSPX-[A-Za-z0-9_-]{28}",
         ('{"web": {"client_secret": "«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»"}}',)),
    Rule("google-oauth-token", ("ya29.",), r"\bya29\.[0-9A-Za-z_-]{20,}",
         ("tok = «ya29.V2TGI4PR-RKO3MvHQsEQtpiuoT9djsp9pVlQ_pjtoJzggRCap18kvu9KVzoG»",)),
    Rule("kubernetes-bootstrap-token", ("token",), r"(?<![\w.-])[a-z0-9]{6}\.[a-z0-9]{16}(?![\w.-])",
         ("    token: «byx1wq.r2uv5vsu1tkqvjpv»", "kubeadm join --token «abcdef.0123456789abcdef»"),
         ("token = config.tokenfilesetting",), check="two_digits"),
    Rule("azure-storage-key", ("accountkey", "sharedaccesskey"),
         r"(?:accountkey|sharedaccesskey)\s*=\s*(?P<secret>[a-z0-9+/]{30,}+={0,2})", (
        "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=«63sZEqqZ3CYxU/w0A2c+MLpjN/E8A4r+knOh7k/gQvmUZKYiCy6AbaCQYAhIcXhsCAIdB89Sr6wnyclVKmtexp==»;EndpointSuffix=core.windows.net",
        "Endpoint=sb://acme.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey=«A4YdLnAXUQJvcHzwbPjAp9ukzdyc3zO2VCP7cj59akV=»",
    ), icase=True),
    Rule("azure-client-secret", ("q~",), r"(?<![\w~.-])[A-Za-z0-9_~.-]{3}\dQ~[A-Za-z0-9_~.-]{31,34}(?![\w~.-])",
         ("AZURE_CLIENT_SECRET=«U8W8Q~DSA3lxl7kettuA1fToZ0HpXyT4V3cSykBX»",)),
    Rule("azure-sas-signature", ("sig=",), r"[?&]sig=(?P<secret>[A-Za-z0-9%+/=]{20,})",
         ("https://acme.blob.core.windows.net/c?sv=2022-11-02&ss=b&sig=«A4YdLnAXUQJvcHzwbPjAp9ukzdyc3zO2VCP7cj59akV%3D»",)),
    # -- chat webhooks and bots ----------------------------------------------------------------
    Rule("slack-webhook", ("hooks.slack.com",), r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<secret>[A-Za-z0-9+/_-]{20,})",
         ("url = 'https://hooks.slack.com/services/«TMS0BDH78AI/BUF8T2J1S08/f5SX7jNctqtP9SC6Uue5005O»'",)),
    Rule("slack-token", ("xox", "xapp-"), r"\b(?:xox[abposre]|xapp)-[0-9A-Za-z-]{10,}", (
        "SLACK = «xoxb-464970115647-4340703162935-AKXgV1r41YWaukxALsxWnkPm»",
        "app_level: «xapp-1-A7C8FRAB9GR-3117750014615-dfc7695755cb24064d289daac6a7e00b0edd2477051587bf1f47afdba79d0d06»",
    )),
    Rule("discord-webhook", ("discord",), r"discord(?:app)?\.com/api/webhooks/(?P<secret>\d{5,30}/[A-Za-z0-9_-]{30,})",
         ("https://discord.com/api/webhooks/«620399209183936407/hPNOQFEfKsGPSpFk-gMFIYtKhSWbBTkPRU2NFoylq2xqzuB7FAs2KemDVLDhnblmuseX»",)),
    Rule("discord-bot-token", ("discord",), r"\b[MNO][A-Za-z\d_-]{23,25}\.[\w-]{6}\.[\w-]{27,38}(?![\w-])",
         ("client = discord.Client()\nclient.run(«MBxtoJklvSwONzW9VLAI3pIt.0tSn1W._TsWF23xz3iW0nbF7OT6ixKkmVR»)",)),
    Rule("teams-webhook", ("webhook.office.com", "outlook.office.com/webhook"),
         r"(?:webhook\.office\.com/webhookb2|outlook\.office\.com/webhook)/(?P<secret>[A-Za-z0-9@/_-]{40,})",
         ("https://acme.webhook.office.com/webhookb2/«e2a83b25-8263-722b-d7cf-a2799c9cb776@c2bd6f0c-0f97-b61b-9911-1def4788c3fd/IncomingWebhook/6d38d7a2de7b8bae27a072e9b5b2caf4/5f51208c-18d1-b034-af25-d3f8278b65ca»",)),
    Rule("telegram-bot-token", (":aa",), r"\b\d{8,10}:AA[A-Za-z0-9_-]{32,33}(?![\w-])",
         ("bot = Bot('«8649305494:AAuSNNr23WaINK5V-MQOMg7v-T1BciR8cIe»')",)),
    # -- payment and mail ---------------------------------------------------------------------
    Rule("stripe-key", ("sk_live_", "sk_test_", "rk_live_", "rk_test_", "sk_prod_", "rk_prod_", "whsec_"),
         r"\b(?:[sr]k_(?:live|test|prod)_[A-Za-z0-9]{20,}|whsec_[A-Za-z0-9]{32,})", (
        "stripe.api_key = «sk_live_R3FY2UFPxypK3t4OzXuy6rTv»",
        "«rk_test_rne6m1wtlgGaWAsUWFxxmmZA» «whsec_TkytTftFWmPCKdt8OIpCdJyWUdLhGvem»",
    )),
    Rule("sendgrid-key", ("sg.",), r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}(?![\w-])",
         ("sg = SendGridAPIClient(«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»)",)),
    Rule("mailgun-key", ("key-", "mailgun"), r"\bkey-[0-9a-f]{32}\b|\b[0-9a-f]{32}-[0-9a-f]{8}-[0-9a-f]{8}\b", (
        "auth=('api', '«key-16647de8ec9e9057ae884c33fed5b7c5»')",
        "MAILGUN = «28b5fe19b5fbee17098a7f3b1eb49627-1ff4a042-93e91af9»",
    )),
    Rule("mailchimp-key", ("-us",), r"\b[0-9a-f]{32}-us\d{1,2}\b", ("mc = «66a3b70770d8666bae47e559b563dafa-us14»",)),
    # literal first, boundary after: a regex that starts with a literal is searched for at memchr speed
    Rule("twilio-key", (), r"SK(?<![A-Za-z0-9]SK)[0-9a-fA-F]{32}\b", ("Client(«SKbdba5e2ef29643862e13709d40f139cd», sid)",)),
    Rule("square-token", ("sq0",), r"\bsq0(?:atp|csp)-[0-9A-Za-z_-]{22,43}", (
        "«sq0atp-6-kXENM7k9IS8hK6W1kx7p»", "«sq0csp-gSA5Fjduxq-2IIdojekgVup4q6tKkdeWJLKM107lNdZ»")),
    Rule("braintree-token", ("access_token$",), r"access_token\$production\$[0-9a-z]{16}\$[0-9a-f]{32}",
         ("«access_token$production$l44by36fackc7y7a$72e0b870fd542bfdfb312d81b712d466»",)),
    Rule("shopify-token", ("shpat_", "shpca_", "shppa_", "shpss_"), r"\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}",
         ("X-Shopify-Access-Token: «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»",)),
    # -- VCS, registries, infrastructure, AI -----------------------------------------------------
    Rule("github-token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
         r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})", (
        "«ghp_dZqrxlpbIV7FYr1d2WR6qDIwBEIKxOlG30Qw»", "«gho_LFFpiCFLcB8w2GqOjjChmiZrEQ0kVBTcx2i4»",
        "«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»",
    )),
    Rule("gitlab-token", ("glpat-", "gldt-", "glrt-", "glptt-", "glft-", "glimt-", "gloas-", "glcbt-", "glsoat-",
                          "glagent-", "gr1348941"),
         r"\b(?:gl(?:pat|dt|rt|ptt|ft|imt|oas|cbt|soat|agent)-[A-Za-z0-9_-]{20,}|GR1348941[A-Za-z0-9_-]{20,})", (
        "«glpat-vUWCqxm6WDAdpCIF6KDY»", "runner: «glrt-MPEL4SmKEFvHm1eqiUvo»", "«GR1348941lgmYeY6LHzTNqcdCQEkU»")),
    Rule("atlassian-token", ("atbb", "atatt"), r"\b(?:ATBB[A-Za-z0-9_=.-]{32,}|ATATT[A-Za-z0-9_=.-]{50,})", (
        "«ATBBD0qheSvbC9uURCNdEsGsLj5JQSaF60AP»", "«ATATT3xFfGF09X7VgfaSUVQnkHW8=ggm-t_8-EQ1GA06RUi2a0PywXND5IBRneJb4Nu5tG4T»")),
    Rule("npm-token", ("npm_",), r"\bnpm_[A-Za-z0-9]{36}\b", ("//registry.npmjs.org/:_authToken=«npm_aTyyLAw44dpCh66a0ixbIT7dAZfIHwRkoGz9»",)),
    Rule("pypi-token", ("pypi-age",), r"\bpypi-AgE[A-Za-z0-9_-]{50,}",
         ("password = «pypi-AgEIcHlwaS5vcmcFgozHHUZrAInw67xXWlSw4pMWnDRmcWIowaMFIXDZcf-7lz0CDrEZ_b-KFXt»",)),
    Rule("rubygems-docker-token", ("rubygems_", "dckr_pat_"), r"\b(?:rubygems_[0-9a-f]{48}|dckr_pat_[A-Za-z0-9_-]{27,})", (
        "«rubygems_ecd57fc5ae124aeac1ecbb2af2f4a7aa105e8f428133514a»", "docker login -p «dckr_pat_gYybVYHuCAUeQftHupwdX8XzBkF»")),
    Rule("hashicorp-token", ("hvs.", "hvb.", "hvr.", "atlasv1"),
         r"\bhv[sbr]\.[A-Za-z0-9_-]{24,}|\b[a-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,}", (
        "VAULT = «hvs.OTxt8Nyiq-ne7hJkBb1AmsKJ»",
        "«1x8mokqbq96xbl.atlasv1.nUCzeiaJvhlnj=aQZQVy6-JCcg6ivcAYOAIU5BjVRtBu6B1p6AYohNV2UI=On83T»",
    )),
    Rule("ai-api-key", ("sk-", "hf_"), r"\bsk-(?:proj-|svcacct-|admin-|ant-[a-z0-9]+-)?[A-Za-z0-9_-]{32,}|\bhf_[A-Za-z0-9]{34,}", (
        "«sk-proj-myv1A_D8MskG4qQyXg_OIkkThPLjcM-MSuhibfAnb4mGe0uq»",
        "«sk-ant-api03-UfZz4K4coVnl13uZvv9_CLkyywbsUhnHAF2NdcB3xbCBIbHYrX5ndC-GiN0SIGngvmpCUPMViAotl7xEV9Eny8Z_ApWHXAA»",
        "HfApi(«hf_iOqofwAq91NQLEeT9Bi9aKoKe9qOWgkrby»)",
    ), ("parser.add_argument('--disk-space-for-caching-the-largest-files')",)),
    Rule("jwt", ("eyj",), r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*",
         ("t = «eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U»",)),
    # -- passwords in URLs, connection strings, headers, command lines ------------------------------
    # the password may hold an unescaped @ or :, so it ends at the last @ that a host name follows
    Rule("url-password", ("://",),
         r"://[^\s:/@'\"<>]{0,64}:(?P<secret>[^\s/'\"<>]{1,256}?)@(?=[\w.-]*\w(?:[:/?#'\"\s]|\Z))", (
        "DATABASE_URL=postgres://app:«Pg7wLx2q»@db:5432/app", "redis://:«r3d1sPw»@cache:6379/0", "amqp://u:«Pw@+K@N-q&7»@mq:5672//",
        "git clone https://me:«ghp_dZqrxlpbIV7FYr1d2WR6qDIwBEIKxOlG30Qw»@github.com/acme/x.git",
    ), ("see http://user:password@host/ and ftp://anonymous:@ftp.example.org", "ssh://git@github.com:22/x"),
        icase=True, check="url_password"),
    Rule("authorization-header", ("authorization", "bearer"),
         r"(?:authorization[ \t]*['\"]?[ \t]*[:=][ \t]*['\"]?(?P<scheme>bearer|basic|token|bot|apikey|digest)?|\bbearer)[ \t]+(?P<secret>[a-z0-9._~+/-]{8,}=*)", (
        "curl -H \"Authorization: Bearer «3aEnp6eJ0NfnFElTUFgthvgL»\" https://api.acme.io",
        "headers = {'Authorization': 'Basic «YWRtaW46VnZ0Ulphbm50TGZx»'}", "Authorization: Basic «dXNlcjpwYXNz»",
    ), ("the Authorization: Bearer header carries the token", "-H \"Authorization: Bearer $TOKEN\"",
        "authorization = base64.decodebytes(authorization).decode('ascii')"),
        icase=True, check="token"),
    Rule("cli-credential-flag", ("--pass", "--token", "--api-key", "--apikey", "--secret", "--auth-token", "-u "),
         r"(?:\s--(?:password|passwd|pass|token|api-key|apikey|secret|auth-token|access-token)(?:=|[ \t]+)|\s-u[ \t]+['\"]?[^\s:'\"]+:)"
         r"['\"]?(?P<secret>[^\s'\"]{4,})", (
        "mysqladmin --password=«Sup3r!pw» status", "curl -u admin:«Vvt7Zannt» https://x", "tool --token «oc5ZtMaYIyIlXSJ83x»",
    ), ("add('--password', help='the password')", "run --token $TOKEN"), icase=True, check="password"),
    Rule("dockerfile-env", ("env ", "arg "),
         rf"(?m)^\s*(?:env|arg)\s+(?P<key>[\w.-]*(?:{_CREDENTIAL_NAMES})[\w.-]*)[ \t]+['\"]?(?P<secret>[^\s'\"]{{4,}})",
         ("ENV API_KEY «FqbAwSC3mdmm2p4cN08gJ6Mf»",), icase=True, check="password"),
    Rule("xml-credential", ("password>", "secret>", "token>", "key>"),
         r"<(?P<key>[\w:.-]*(?:password|secret|token|apikey|api_key|accesskey)[\w.-]*)>(?P<secret>[^<\s]{4,})</",
         ("<server><password>«CH2yPLwlw8Vq»</password></server>",), ("<password>${env.PW}</password>",),
         icase=True, check="password"),
    Rule("php-define", ("define(",),
         r"define\(\s*['\"][\w]*(?:password|key|salt|secret|token)\w*['\"]\s*,\s*['\"](?P<secret>[^'\"]{4,})['\"]",
         ("define('DB_PASSWORD', '«dTBkJUd4lLLV»');", "define( 'AUTH_KEY', '«VU2Kpio Yvyekl%R5v»' );"),
         icase=True, check="password"),
    Rule("prose-password", ("passw", "passphrase", "passcode"),
         r"\b(?:passwor[dt]|passwd|passphrase|passcode)s?(?:[ \t]+(?:is|was|of|for \w+ is|set to|will be)\b)?[ \t]*[:=]?[ \t]+"
         r"[`'\"*]*(?P<secret>[^\s`'\"*<>,;()\[\]@][^\s`'\"*<>,;()\[\]]{5,63}?)[`'\"*.,;)]*(?=\s|\Z)", (
        "Log in as admin; the password is «U9IUghtmRfB3».", "Default passphrase: `«9zhmYC31!ZTJ»`",
        "machine example.com login me password «j4EBsF35Vz9C»", "CREATE USER app WITH PASSWORD '«PXh7@NJd=1625»';",
    ), ("The password is stored with pbkdf2 hashing.", "Enter your password: then press Enter.",
        "# send the password anonymous@ as RFC 959 suggests", "# the password and/or the user name"),
        icase=True, check="prose"),
    Rule("sql-password", ("identified by",), r"identified[ \t]+by[ \t]+(?:password[ \t]+)?'(?P<secret>[^'\n]{4,})'",
         ("CREATE USER 'app'@'%' IDENTIFIED BY '«My5ql!pw»';",), icase=True, check="password"),
    # -- credential assignments in any config or code format ---------------------------------------
    Rule("credential-assignment", CREDENTIAL_NAMES,
         rf"(?P<kw>{_CREDENTIAL_NAMES})(?P<tail>[\w.-]*+)['\"\]]*"
         r"(?::[ \t]*[\w.]+(?:\[[\w., \t\[\]]*\])?(?:[ \t]*\|[ \t]*[\w.]+)*(?=[ \t]*=[^=\n]))?"
         rf"[ \t]*(?P<sep>=>|:=|==|!=|\|\|=|=|:)[ \t]*{_VALUE}", (
        "password: «Pg7wLx2qZr»", "[db]\npassword = «s3cr3t-Value»", 'api_key = "«0VRFgVIvHnEevsclrQ8zfeby»"',
        "db.password=«Sup3r$ecret!»", "export API_TOKEN=«GwPaon9uMiGjCvN2d6FC»", "ENV API_KEY=«FqbAwSC3mdmm2p4cN»",
        "      POSTGRES_PASSWORD: «Pg_9yQ2x7Lw»", "password: «cGFzc3dvcmQxMjM=»\napi-key: «UEVkND1YQWorPTUybDA=»",
 "      - POSTGRES_PASSWORD=«Pg_9yQ2x7Lw»",
        'npmAuthToken: "«9d1f8a3c-2b7e-4c6d-9e0f-1a2b3c4d5e6f»"', "Server=db;User Id=sa;Password=«Sq1!Srv2»;",
        "jdbc:mysql://db/app?user=root&password=«My5ql_pw»&ssl=true", 'SECRET_KEY = "«django-insecure-8x!k2$q0v»"',
        'api_key: str = "«oc5ZtMaYIyIlXSJ83xAU»"', "X-Api-Key: «8G3hdUEiXL4ppBqAmlrv»", 'PASSWORD = "«correcthorse»"',
        'typed = {"client_secret": "«Zx9Qw8Er7Ty6Ui5O»", ', 'if password == "«letmein42»":',
    ), (
        'password = getpass.getpass("Password: ")', 'token = "short"', "key = hashlib.sha256(data).hexdigest()",
        'PASSWORD_ENV_VAR = "MY_APP_PASSWORD"', "def secret_key(self): ...", "token = self.tokens[i]",
        "api_key = os.environ['API_KEY']", 'password: "${DB_PASSWORD}"', "POSTGRES_PASSWORD_FILE: /run/secrets/db",
        "max_tokens: 4096", 'token_type = "bearer"', "secretName: db-credentials", "password=password,",
        "tokenizer = AutoTokenizer.from_pretrained(name)", 'if token == "ENDMARKER":', "password: changeme",
        "key: value", 'eos_token = "</s>"', "token = next(tokens)", "password = request.form['password']",
        "if token == current_token:", "elif token == 0xF:", "if self.token == self.eof:",
        "password: SecretStr = Field(\n    default=None)",
    ), icase=True, check="credential", anchored=True),
    # -- anything else random enough to be a key ---------------------------------------------------
    Rule("high-entropy-string", (), r"(?P<q>['\"`])(?P<secret>[A-Za-z0-9+/=_-]{20,256}+)(?P=q)", (
        'BLOB = "«q8Zl2VnX0pT7cKw3RbYmJ5sFhDu9ELgA»"',
    ), (
        'x = "some_long_identifier_name_here"', "DIGEST = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'",
        'path = "abcdefghijklmnopqrstuvwxyz012345"', 'NAME = "TestCaseWithAVeryLongName2"',
        "'N18x509_attributes_st4DOLLAR_13E'", "b'd3d3LnB5dGhvbi5vcmc='",  # base64 of text is encoded text, not a key
    ), check="high_entropy"),
)  # fmt: skip
