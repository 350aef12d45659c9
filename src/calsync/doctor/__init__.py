"""The troubleshooting checklist (seed 000) run for real: each check passes, warns or fails and
says what fixes it. The diagnostics page and `calsync doctor` show the same `Diagnosis`.

- report.py: the result types (`Check`, `Diagnosis`, `Text`), the support report and the
  terminal table;
- subject.py: the user under examination and what the checks share;
- stored.py: the checks that read what calsync stored (they run offline);
- live.py: the checks that ask Google and the public URL;
- checklist.py: `diagnose` runs them in the checklist's order; `run_cli` is `calsync doctor`.

The doctor sits beside jobs, above sync: it reads the store through its repositories
(store/diagnostics.py holds its own queries) and the calsync.* codes from sync/codes.py.
"""

from .checklist import diagnose, run_cli
from .report import (
    FAIL,
    PASS,
    SANDBOX,
    SKIP,
    WARN,
    Check,
    Diagnosis,
    Text,
    print_diagnosis,
    redact,
)

__all__ = [
    "FAIL",
    "PASS",
    "SANDBOX",
    "SKIP",
    "WARN",
    "Check",
    "Diagnosis",
    "Text",
    "diagnose",
    "print_diagnosis",
    "redact",
    "run_cli",
]
