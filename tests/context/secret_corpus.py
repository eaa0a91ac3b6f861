"""A workspace full of secrets in the formats people really leak them in, each value a fresh canary.

`CASES` are (format, path, template) rows; `CURSOR_CASES` hold text on both sides of a cursor.
In a template ``⟦kindN⟧`` becomes a new random canary of N characters (kinds in `_ALPHABETS`,
plus ``uuid``, ``pembase64``, ``basic``, ``b64pw``), and ``⟦M⟧`` a marker that is not secret,
so a test can tell that the file really was packed. `build` makes the files and returns every
canary; a canary counts as leaked when any 10 characters of it show up.
"""

# ruff: noqa: E501 (a table of example tokens and templates reads better one row per line)
from __future__ import annotations

import base64
import random
import re
import string
import uuid

_ALPHABETS = {
    "U": string.ascii_uppercase + string.digits,
    "a": string.ascii_letters + string.digits,
    "l": string.ascii_lowercase + string.digits,
    "h": "0123456789abcdef",
    "b": string.ascii_letters + string.digits + "+/",
    "w": string.ascii_letters + string.digits + "_-",
    "d": string.digits,
}
_PASSWORD_SYMBOLS = "!@#^&*-_=+"
_SLOT = re.compile(r"⟦(M|uuid|pembase64|basic|b64pw|[Uablhwdp])(\d*)⟧")

CASES: list[tuple[str, str, str]] = [
    ("AWS access key id", "src/aws_client.py", '# ⟦M⟧\nACCESS_KEY_ID = "AKIA⟦U16⟧"\n'),
    ("AWS credentials INI", "deploy/aws.cfg", "# ⟦M⟧\n[default]\naws_access_key_id = AKIA⟦U16⟧\naws_secret_access_key = ⟦b40⟧\n"),
    ("AWS session token, shell export", "scripts/aws_env.sh", "# ⟦M⟧\nexport AWS_SESSION_TOKEN=⟦a120⟧\n"),
    ("GCP API key", "web/maps.js", "// ⟦M⟧\nconst MAPS_KEY = 'AIza⟦a35⟧';\n"),
    ("GCP service account JSON", "deploy/gcp.json",
     '{"marker": "⟦M⟧", "type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\n⟦b64⟧\\n⟦b64⟧\\n'
     '-----END PRIVATE KEY-----\\n", "client_email": "ci@acme.iam.gserviceaccount.com"}\n'),
    ("GCP OAuth client secret", "deploy/oauth.json",
     '{"marker": "⟦M⟧", "installed": {"client_id": "1.apps.googleusercontent.com", "client_secret": "GOCSPX-⟦a28⟧"}}\n'),
    ("Azure storage connection string", "src/blob.py",
     '# ⟦M⟧\nCONN = "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=⟦b86⟧==;EndpointSuffix=core.windows.net"\n'),
    ("Azure client secret, CI YAML", ".github/workflows/deploy.yml", "# ⟦M⟧\nenv:\n  AZURE_CLIENT_SECRET: ⟦a3⟧8Q~⟦a34⟧\n"),
    ("Azure SAS URL", "docs/storage.md", "⟦M⟧\n\nhttps://acme.blob.core.windows.net/c?sv=2022-11-02&sp=r&sig=⟦b43⟧%3D\n"),
    ("Slack webhook", "src/alerts.py", '# ⟦M⟧\nHOOK = "https://hooks.slack.com/services/T⟦U10⟧/B⟦U10⟧/⟦a24⟧"\n'),
    ("Slack bot token", "web/slack.ts", '// ⟦M⟧\nconst token = "xoxb-⟦d12⟧-⟦d13⟧-⟦a24⟧";\n'),
    ("Discord webhook", "web/discord.js", '// ⟦M⟧\nfetch("https://discord.com/api/webhooks/⟦d18⟧/⟦w67⟧x", opts);\n'),
    ("Discord bot token", "bots/bot.py", '# ⟦M⟧\nimport discord\nclient.run("M⟦a23⟧.⟦a6⟧.⟦a27⟧")\n'),
    ("Teams webhook", "deploy/notify.yaml",
     "# ⟦M⟧\nteams_url: https://acme.webhook.office.com/webhookb2/⟦uuid⟧@⟦uuid⟧/IncomingWebhook/⟦h32⟧/⟦uuid⟧\n"),
    ("Telegram bot token", "bots/tg.py", '# ⟦M⟧\nbot = Bot(token="⟦d10⟧:AA⟦a33⟧")\n'),
    ("Stripe secret key, Ruby", "app/billing.rb", "# ⟦M⟧\nStripe.api_key = 'sk_live_⟦a24⟧'\n"),
    ("Stripe webhook secret, TOML", "config/stripe.toml", '# ⟦M⟧\nwebhook_secret = "whsec_⟦a32⟧"\n'),
    ("Mailgun key, INI", "config/mail.ini", "; ⟦M⟧\n[mailgun]\napi_key = key-⟦h32⟧\n"),
    ("Twilio key and auth token, Go", "src/sms.go",
     '// ⟦M⟧\npackage sms\n\nvar params = ClientParams{Username: "SK⟦h32⟧", Password: "⟦h32⟧"}\n'),
    ("Mailchimp key", "src/news.py", '# ⟦M⟧\nMAILCHIMP = "⟦h32⟧-us14"\n'),
    ("Square token, shell", "scripts/square.sh", "# ⟦M⟧\nSQUARE_ACCESS_TOKEN=sq0atp-⟦a22⟧\n"),
    ("Shopify token, curl in README", "docs/shopify.md",
     "⟦M⟧\n\n    curl -H 'X-Shopify-Access-Token: shpat_⟦h32⟧' https://acme.myshopify.com/admin/api\n"),
    ("GitHub token, workflow", ".github/workflows/ci.yml", "# ⟦M⟧\nenv:\n  GH_TOKEN: ghp_⟦a36⟧\n"),
    ("GitHub fine-grained token", "tools/gh.py", '# ⟦M⟧\nGH = "github_pat_⟦a22⟧_⟦a59⟧"\n'),
    ("git credentials in a URL", "scripts/clone.sh", "# ⟦M⟧\ngit clone https://bot:⟦p14⟧@github.com/acme/app.git\n"),
    ("GitLab token, CI YAML", ".gitlab-ci.yml", "# ⟦M⟧\nvariables:\n  GITLAB_TOKEN: glpat-⟦a20⟧\n"),
    ("Bitbucket token", "tools/bb.py", '# ⟦M⟧\nBITBUCKET = "ATBB⟦a32⟧"\n'),
    ("npm token, .yarnrc.yml", ".yarnrc.yml",
     '# ⟦M⟧\nnpmRegistries:\n  "//registry.npmjs.org":\n    npmAuthToken: npm_⟦a36⟧\n  "//npm.acme.io":\n'
     '    npmAuthToken: "⟦uuid⟧"\n'),
    ("PyPI token, setup.cfg", "deploy/upload.cfg", "# ⟦M⟧\n[pypi]\nusername = __token__\npassword = pypi-AgEIcHlwaS5vcmc⟦a60⟧\n"),
    ("Docker Hub token, login", "scripts/release.sh", "# ⟦M⟧\ndocker login -u acme -p dckr_pat_⟦a27⟧\n"),
    ("Vault token, Makefile", "Makefile", "# ⟦M⟧\nexport VAULT_TOKEN := hvs.⟦a24⟧\n"),
    ("OpenAI key", "ai/client.py", '# ⟦M⟧\nclient = OpenAI(api_key="sk-proj-⟦w47⟧x")\n'),
    ("Anthropic key, YAML", "ai/config.yaml", "# ⟦M⟧\nANTHROPIC_API_KEY: sk-ant-api03-⟦w92⟧xAA\n"),
    ("Hugging Face token, Dockerfile ENV", "Dockerfile", "# ⟦M⟧\nFROM python:3.12\nENV HF_TOKEN=hf_⟦a34⟧\n"),
    ("JWT", "web/session.js",
     '// ⟦M⟧\nconst jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ⟦w40⟧x.⟦w42⟧x";\n'),
    ("RSA private key in a string", "src/signing.py",
     '# ⟦M⟧\nKEY = """-----BEGIN RSA PRIVATE KEY-----\n⟦b64⟧\n⟦b64⟧\n-----END RSA PRIVATE KEY-----"""\n'),
    ("OpenSSH private key in a README", "README.md",
     "⟦M⟧\n\n```\n-----BEGIN OPENSSH PRIVATE KEY-----\n⟦b70⟧\n⟦b70⟧\n-----END OPENSSH PRIVATE KEY-----\n```\n"),
    ("PGP private key block", "docs/keys.md",
     "⟦M⟧\n\n-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n⟦b64⟧\n⟦b64⟧\n-----END PGP PRIVATE KEY BLOCK-----\n"),
    ("EC private key in a Kubernetes secret", "deploy/tls.yaml",
     "# ⟦M⟧\nstringData:\n  tls.key: |\n    -----BEGIN EC PRIVATE KEY-----\n    ⟦b64⟧\n    -----END EC PRIVATE KEY-----\n"),
    ("kubeconfig token and client-key-data", "deploy/kubeconfig.yaml",
     "# ⟦M⟧\nusers:\n- name: admin\n  user:\n    token: ⟦l6⟧.⟦l16⟧\n- name: ci\n  user:\n    client-key-data: ⟦pembase64⟧\n"),
    ("Kubernetes Secret data", "deploy/k8s-db.yaml", "# ⟦M⟧\nkind: Secret\ndata:\n  password: ⟦b64pw⟧\n  api-key: ⟦b64pw⟧\n"),
    ("docker-compose POSTGRES_PASSWORD and DATABASE_URL", "docker-compose.yml",
     "# ⟦M⟧\nservices:\n  db:\n    environment:\n      POSTGRES_PASSWORD: ⟦p12⟧\n  app:\n    environment:\n"
     "      - DATABASE_URL=postgres://app:⟦p12⟧@db:5432/app\n"),
    ("Dockerfile ENV and ARG", "services/api/Dockerfile",
     "# ⟦M⟧\nFROM node:22\nENV API_KEY=⟦a32⟧\nENV STRIPE_SECRET ⟦a32⟧\nARG NPM_TOKEN=⟦a32⟧\n"),
    ("shell export", "scripts/env.sh", "# ⟦M⟧\nexport API_TOKEN=⟦a32⟧\nexport DB_PASS='⟦p12⟧'\n"),
    ("curl Bearer header", "scripts/call.sh",
     '# ⟦M⟧\ncurl -H "Authorization: Bearer ⟦a40⟧" https://api.acme.io/v1/items\n'),
    (".NET connection string", "appsettings.json",
     '{"marker": "⟦M⟧", "ConnectionStrings": {"Default": "Server=db;Database=app;User Id=sa;Password=⟦p12⟧;"}}\n'),
    ("JDBC URL", "config/application.yml", "# ⟦M⟧\nurl: jdbc:postgresql://db:5432/app?user=app&password=⟦p12⟧&ssl=true\n"),
    ("MongoDB URL", "src/mongo.py", '# ⟦M⟧\nMONGO_URI = "mongodb+srv://app:⟦p12⟧@cluster0.ab1cd.mongodb.net/db"\n'),
    ("Redis URL", "config/cache.yaml", "# ⟦M⟧\nredis_url: redis://:⟦p12⟧@cache:6379/0\n"),
    ("AMQP URL, TOML", "config/broker.toml", '# ⟦M⟧\nbroker = "amqp://worker:⟦p12⟧@mq:5672//"\n'),
    ("unquoted YAML password", "config/database.yaml", "# ⟦M⟧\ndatabase:\n  user: app\n  password: ⟦p12⟧\n"),
    ("INI password", "config/db.ini", "; ⟦M⟧\n[db]\nuser = app\npassword = ⟦p12⟧\n"),
    ("TOML api_key", "pyproject.toml", '# ⟦M⟧\n[tool.acme]\napi_key = "⟦a32⟧"\n'),
    ("password in README prose", "docs/setup.md", "⟦M⟧\n\nThe staging admin password is ⟦p12⟧ (rotate it monthly).\n"),
    ("Django SECRET_KEY", "web/settings.py", "# ⟦M⟧\nSECRET_KEY = 'django-insecure-⟦p40⟧'\n"),
    ("PHP define", "web/config.php", "<?php // ⟦M⟧\ndefine('DB_PASSWORD', '⟦p12⟧');\n"),
    ("Go const", "src/client.go", '// ⟦M⟧\npackage client\n\nconst apiKey = "⟦a32⟧"\n'),
    ("Java constant", "src/Db.java", '// ⟦M⟧\nclass Db { private static final String PASSWORD = "⟦p12⟧"; }\n'),
    ("Rust literal", "src/lib.rs", '// ⟦M⟧\nfn token() -> &\'static str { let token = "⟦a40⟧"; token }\n'),
    ("C# connection string", "src/Db.cs",
     '// ⟦M⟧\nclass Db { string conn = "Server=db;Database=app;User Id=sa;Password=⟦p12⟧;"; }\n'),
    ("Rails secret_key_base", "config/secrets_base.rb", '# ⟦M⟧\nconfig.secret_key_base = "⟦h128⟧"\n'),
    ("Lua local", "src/init.lua", '-- ⟦M⟧\nlocal password = "⟦p12⟧"\n'),
    ("Kotlin val", "src/Api.kt", '// ⟦M⟧\nval apiKey = "⟦a32⟧"\n'),
    ("Swift let", "src/Api.swift", '// ⟦M⟧\nlet secret = "⟦a32⟧"\n'),
    ("SQL CREATE USER", "db/users.sql", "-- ⟦M⟧\nCREATE USER app WITH PASSWORD '⟦p12⟧';\n"),
    ("HTML inline script", "web/index.html", '<!-- ⟦M⟧ -->\n<script>window.API_KEY = "⟦a32⟧";</script>\n'),
    ("HTTP Basic header", "docs/api.md", "⟦M⟧\n\n    Authorization: Basic ⟦basic⟧\n"),
    ("curl -u user:password", "scripts/basic.sh", "# ⟦M⟧\ncurl -u admin:⟦p12⟧ https://acme.io/api\n"),
    ("CLI --password flag", "scripts/backup.sh", "# ⟦M⟧\nmysqldump --password=⟦p12⟧ app > dump.sql\n"),
    ("netrc-style line in docs", "docs/netrc.md", "⟦M⟧\n\n    machine api.acme.io login bot password ⟦p12⟧\n"),
    ("high-entropy literal with a plain name", "src/blob_const.py", '# ⟦M⟧\nBLOB = "⟦a40⟧"\n'),
    ("secret in a comment", "src/todo.py", "# ⟦M⟧\n# token: ⟦a32⟧ (remove before release)\nx = 1\n"),
]  # fmt: skip

# (format, path, prefix, suffix): the cursor sits between them
CURSOR_CASES: list[tuple[str, str, str, str]] = [
    ("DB password, Slack webhook, SendGrid and Azure keys around the cursor", "app/db.py",
     '# ⟦M⟧\nDB_PASSWORD = "⟦p12⟧"\nHOOK = "https://hooks.slack.com/services/T⟦U10⟧/B⟦U10⟧/⟦a24⟧"\n\ndef connect():\n    ',
     'return None\n\nSENDGRID = "SG.⟦a22⟧.⟦a43⟧"\nAZURE_KEY = "⟦a3⟧8Q~⟦a34⟧"\n'),
    (".properties (not an indexed language)", "config/application.properties",
     "# ⟦M⟧\nspring.datasource.password=⟦p12⟧\nspring.", "\njwt.secret=⟦a40⟧\n"),
    ("XML settings", "deploy/settings.xml",
     "<!-- ⟦M⟧ -->\n<settings><servers><server><password>⟦p12⟧</password></server>\n  ", "</servers></settings>\n"),
    ("a key being typed, split by the cursor", "app/keys.py", '# ⟦M⟧\nAPI_KEY = "sk-proj-⟦a24⟧', '⟦a24⟧"\nx = 1\n'),
]  # fmt: skip


def _password(rng: random.Random, n: int) -> str:
    classes = [string.ascii_uppercase, string.ascii_lowercase, string.digits, _PASSWORD_SYMBOLS]
    chars = [rng.choice(c) for c in classes] + [rng.choice("".join(classes)) for _ in range(n - 4)]
    return "P" + "".join(chars[:-1]) + rng.choice(string.digits)  # starts and ends plainly, like a real one


def fill(template: str, rng: random.Random, marker: str, canaries: list[str]) -> str:
    """`template` with its slots filled; appends each canary to `canaries`."""

    def one(m: re.Match) -> str:
        kind, n = m.group(1), int(m.group(2) or 0)
        if kind == "M":
            return marker
        if kind == "uuid":
            value = str(uuid.UUID(int=rng.getrandbits(128)))
        elif kind == "p":
            value = _password(rng, n)
        elif kind == "pembase64":
            body = "".join(rng.choice(_ALPHABETS["b"]) for _ in range(48))
            value = base64.b64encode(f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n".encode()).decode()
        elif kind == "basic":
            value = base64.b64encode(f"admin:{_password(rng, 12)}".encode()).decode()
        elif kind == "b64pw":
            value = base64.b64encode(_password(rng, 13).encode()).decode()
        else:
            alphabet = _ALPHABETS[kind]
            first = rng.choice([c for c in alphabet if c.isalnum()])
            value = first + "".join(rng.choice(alphabet) for _ in range(n - 1))
        if len(value) >= 10:  # shorter ones are parts of a longer secret, checked through its other parts
            canaries.append(value)
        return value

    return _SLOT.sub(one, template)


def build(seed: int = 16):
    """(files: path -> text, canaries, markers: path -> marker, cursor cases filled in)."""
    rng = random.Random(seed)
    files, markers, canaries = {}, {}, []
    for i, (_, path, template) in enumerate(CASES):
        markers[path] = f"marker{i:03d}q"
        files[path] = fill(template, rng, markers[path], canaries)
    cursor = []
    for i, (name, path, prefix, suffix) in enumerate(CURSOR_CASES):
        marker = f"cursormarker{i:03d}q"
        cursor.append((name, path, fill(prefix, rng, marker, canaries), fill(suffix, rng, marker, canaries), marker))
    return files, canaries, markers, cursor


def leaked(canaries: list[str], text: str) -> list[str]:
    """The canaries of which any 10 characters occur in `text`."""
    return [c for c in canaries if any(c[i : i + 10] in text for i in range(max(1, len(c) - 9)))]
