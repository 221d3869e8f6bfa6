"""`make screenshot`: docs/demo.png, the sample's /demo/ page in the middle of a few runs.

    .venv/bin/python tools/screenshot.py [OUT.png]

Starts a throw-away stack (`tools.stack.private_stack`: own broker, Redis database 15, SQLite,
web app, one worker), logs in as the demo user in the system's headless Chromium
(tools/browser.py), ends one report, cancels one slow call, starts two longer reports and
takes the picture while their progress bars move. Everything is stopped afterwards.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `tools` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.browser import VIEWPORT, chromium  # noqa: E402
from tools.devstack import DEMO_USER  # noqa: E402
from tools.stack import ROOT, private_stack  # noqa: E402

OUT = ROOT / "docs" / "demo.png"
REDIS_DB = 8
WAIT_MS = 60_000
# The newest row is on top: the two running reports, then the cancelled and the ended one.
ROW_STATE = "id => document.querySelector(`#operations tr[data-id='${id}'] .state`).textContent"


def take(out: Path) -> int:
    """Run the stack and the page, write the PNG to `out`; its size in bytes."""
    with private_stack("screenshot", redis_db=REDIS_DB) as stack:
        web = stack.start_web()
        stack.start_worker(concurrency=3)
        stack.create_user(*DEMO_USER)
        with chromium() as browser:
            context = browser.new_context(viewport=VIEWPORT)
            context.set_default_timeout(WAIT_MS)
            page = context.new_page()
            page.goto(f"{web.url}/demo/", wait_until="load")
            page.click("#login-button")  # the form comes filled in with the demo user
            page.wait_for_function("!document.querySelector('#start-report').disabled")

            def start(button: str, seconds_field: str, seconds: float) -> str:
                before = page.eval_on_selector_all("#operations tr", "r => r.length")
                page.fill(seconds_field, str(seconds))
                page.click(button)
                page.wait_for_function("n => document.querySelectorAll('#operations tr')"
                                       ".length > n", arg=before)
                task_id: str = page.eval_on_selector("#operations tr", "tr => tr.dataset.id")
                return task_id

            page.select_option("#report-kind", "orders")
            done = start("#start-report", "#report-seconds", 0.5)
            page.wait_for_function(f"id => ({ROW_STATE})(id) === 'completed'", arg=done)
            slow = start("#start-slow", "#slow-seconds", 20)
            page.click(f"#operations tr[data-id='{slow}'] .cancel")
            page.wait_for_function(f"id => ({ROW_STATE})(id) === 'cancelled'", arg=slow)
            page.select_option("#report-kind", "sales")
            first = start("#start-report", "#report-seconds", 12)
            second = start("#start-report", "#report-seconds", 20)
            page.wait_for_function(
                "ids => ids.every(id => document.querySelector("
                "`#operations tr[data-id='${id}'] progress`).value >= 20)", arg=[first, second])
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
            context.close()
    return out.stat().st_size


def main(argv: list[str]) -> int:
    """Write the screenshot (argv[0], default docs/demo.png); say where and how big."""
    out = Path(argv[0]) if argv else OUT
    size = take(out)
    print(f"{out}: {size / 1024:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
