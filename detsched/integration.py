"""The seam for test-framework integrations, such as the pytest plugin: the parts of a run they
drive beyond ``detsched``'s own API. Stable for integrations; most users never need it.

- ``Target``: a function to explore with the options an integration sets (whether what it leaves
  behind fails the run, whether blocked threads are let go, a set-up before every run);
- ``schedule_so_far`` and ``started_threads``: what the run in progress did so far;
- ``format_failure``: a failure's text as the registered reporters write it;
- ``is_project_file``: whether a file belongs to the project under test rather than to an
  installed package or the standard library;
- ``pace`` and ``plural``: the wording of summary lines;
- ``forget_benign``: withdraw ``detsched.benign`` patterns an integration declared for a session;
- ``Coverage`` and ``write_coverage_json``: an exploration's concurrency coverage, merged over
  shards and written beside coverage.py's files;
- ``write_html_timeline``: a run's trace as a self-contained HTML page.
"""

from detsched._core.frames import is_project_file as is_project_file
from detsched._detect.races import forget_benign as forget_benign
from detsched._explore.explorer import schedule_so_far as schedule_so_far, started_threads as started_threads
from detsched._explore.targets import Target as Target
from detsched._report.coverage import Coverage as Coverage, write_json as write_coverage_json
from detsched._report.html import write_page as write_html_timeline
from detsched._report.timeline import pace as pace, plural as plural
from detsched.plugins import format_failure as format_failure

__all__ = ["Coverage", "Target", "forget_benign", "format_failure", "is_project_file", "pace", "plural", "schedule_so_far", "started_threads",
           "write_coverage_json", "write_html_timeline"]
