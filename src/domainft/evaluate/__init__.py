"""Stage eval: the domain's lm-eval tasks on base and tuned, and a report (report.json/md/png)."""

from .run import run_eval

__all__ = ["run_eval"]
