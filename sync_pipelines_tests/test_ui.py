"""The Dagster UI as a person uses it: Playwright driving Debian's Chromium against a real `dagster-webserver` and
`dagster-daemon` over the embedded sandbox."""

import json
import re
import shutil
import time
import uuid

import dagster as dg
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from sync_pipelines_tests.webhooks.daemon import (
    FINISHED,
    HANG_GUARD_SECONDS,
    dagster_daemon,
    dagster_webserver,
    wait_for,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LOCATION, JOB = "sync_pipelines", "xero_to_segment_sync"
UI_WAIT_MS = HANG_GUARD_SECONDS * 1000  # a hang guard, not a claim about speed


def _materialize_the_flow(page: Page, ui: str, home: str) -> dg.DagsterRun:
    """Click the flow job's Materialize all (confirming Dagster's note that its backfill assets were never
    materialised) and wait for the run it launched to end."""
    with dg.DagsterInstance.from_config(home) as instance:
        before = {run.run_id for run in instance.get_runs(dg.RunsFilter(job_name=JOB))}
    page.goto(f"{ui}/locations/{LOCATION}/jobs/{JOB}")
    page.get_by_role("button", name="Materialize all").click()
    confirm = page.get_by_role("button", name="Confirm")
    confirm.or_(page.get_by_text("Launched run")).first.wait_for()
    if confirm.is_visible():
        confirm.click()

    def ended() -> dg.DagsterRun | None:
        with dg.DagsterInstance.from_config(home) as instance:
            runs = [r for r in instance.get_runs(dg.RunsFilter(job_name=JOB)) if r.run_id not in before]
        return runs[0] if runs and runs[0].status in FINISHED else None

    return wait_for(ended, HANG_GUARD_SECONDS, f"the {JOB} run launched from the UI")


def _open_check(page: Page, ui: str, asset: str, check: str) -> None:
    page.goto(f"{ui}/assets/{asset}?view=checks")
    page.get_by_text(check, exact=True).first.click()


@pytest.mark.timeout(3 * HANG_GUARD_SECONDS)  # two runs under a daemon, each with its hang guard
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium): UI not tested")
def test_a_flow_materialised_from_the_ui_passes_its_checks_and_a_failed_check_shows_its_reasons(
    admin, sync_env, tmp_path
):
    home = sync_env["DAGSTER_HOME"]
    with (
        dagster_daemon(sync_env, tmp_path / "daemon.log"),
        dagster_webserver(sync_env, tmp_path / "webserver.log") as ui,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(UI_WAIT_MS)
        # Playwright's assertions wait 5 s unless told: on a loaded machine the asset graph took longer to draw.
        expect.set_options(timeout=UI_WAIT_MS)

        # As for a person who has dismissed Dagster's newsletter prompt once: it would otherwise open a second after
        # the first page, over whatever dialog is open then.
        page.add_init_script("window.localStorage.setItem('communityNux', '\"1\"')")

        # The asset graph loads with every flow's group.
        page.goto(f"{ui}/asset-groups")
        for group in ("xero_to_segment", "salesforce_to_xero", "intercom_to_xero", "segment_to_xero"):
            expect(page.get_by_text(group, exact=True).first).to_be_visible()

        run = _materialize_the_flow(page, ui, home)
        assert run.status == dg.DagsterRunStatus.SUCCESS
        _open_check(page, ui, "segment/xero_invoices_to_segment", "reconciliation")
        expect(page.get_by_text("Evaluation result").locator("..")).to_contain_text("Passed")

        # Fault: the next invoices Xero serves break the contract, all of them, so the batch is held.
        now = f"/Date({int(time.time() * 1000)}+0000)/"
        invoices = [i for i in admin.get("/xero/invoices") if i["Type"] == "ACCREC"][:4]
        broken = [{**i, "InvoiceID": str(uuid.uuid4()), "Total": "lots", "UpdatedDateUTC": now} for i in invoices]
        admin.post("/xero/raw/invoices", {"records": [json.dumps(invoice) for invoice in broken]})

        _materialize_the_flow(page, ui, home)
        _open_check(page, ui, "xero/staged_xero_invoices", "quarantine_rate")
        expect(page.get_by_text("Evaluation result").locator("..")).to_contain_text("Failed")
        # The reasons, with how many records and which, in the check's table.
        reasons = page.get_by_text("total: 'lots' is not a valid number").locator("..")
        expect(reasons).to_contain_text("4")
        expect(reasons).to_contain_text(re.compile("|".join(invoice["InvoiceID"] for invoice in broken)))
        browser.close()
