"""API keys where they do not belong: a key pasted where the *name* of its environment variable goes
(`-s datagen.api_key_env=sk-…`), or onto the command line. Such a value is refused without being repeated, and
`redact` keeps it out of every line domainft prints or records (errors, the manifest).

Keys come from the environment only (DEVELOPERS.md); this module only recognises them. No heavy imports: the CLI's
error path loads it.
"""

from __future__ import annotations

import re

# The shapes of common API keys: OpenAI-style sk-…, GitHub, Hugging Face, Slack, AWS, GitLab tokens, and Zhipu's
# <32 hex>.<16 letters and digits>.
_KEY = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"sk-[A-Za-z0-9_\-]{12,}|sk_[A-Za-z0-9_]{12,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
    r"|hf_[A-Za-z0-9]{20,}|xox[abpr]-[A-Za-z0-9\-]{10,}|AKIA[0-9A-Z]{16}|glpat-[A-Za-z0-9_\-]{16,}"
    r"|[0-9a-f]{32}\.[A-Za-z0-9]{16}"
    r")"
)
# What an environment variable's name looks like (POSIX: letters, digits, underscores, not starting with a digit).
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
REDACTED = "<redacted>"


def looks_like_key(value: str) -> bool:
    """A known key shape anywhere in the value, or a long run of letters and digits with no word in it (a random
    token: at least 20 characters, lower- and upper-case or digits mixed, no underscore, no space)."""
    if _KEY.search(value):
        return True
    token = value.strip()
    return (len(token) >= 20 and " " not in token and "_" not in token and "/" not in token
            and any(c.isdigit() for c in token) and any(c.isalpha() for c in token))


def env_name_problem(value: str) -> str | None:
    """Why `value` cannot be the name of an environment variable holding a key (None: it can). Never repeats it."""
    if looks_like_key(value):
        return ("looks like a key itself, not the name of an environment variable: put the key in one "
                "(export MY_API_KEY=…) and give its name here")
    if not ENV_NAME.match(value):
        return "is not an environment variable's name (letters, digits and underscores, e.g. OPENAI_API_KEY)"
    return None


def redact(text: str) -> str:
    """`text` with every key-shaped token replaced by <redacted>."""
    return _KEY.sub(REDACTED, text)
