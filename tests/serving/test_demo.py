"""``demo`` in a real browser: the page started as a process, driven by Playwright on Debian's Chromium (never a
browser Playwright downloads), says what ``predict`` says of an uploaded image, and asks nothing of the network."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from lightning_resnet.cli import main

from ..conftest import free_port, make_image_folder, read_rows, start_cli, stop, tiny_args, wait_until_up

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; .ci/run installs it
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                  "--disable-background-networking", "--disable-component-update"]


KEY = "the demo's password"


def log_in(page, password: str) -> None:
    """Gradio's login page: any name, the key as the password."""
    page.get_by_label("username").fill("a visitor")
    page.get_by_label("password").fill(password)
    page.get_by_role("button", name="Login").click()


@pytest.mark.system
def test_the_page_asks_for_its_key_then_shows_predicts_class_the_map_and_the_verdict(tmp_path, trained_once,
                                                                                       monkeypatch):
    assert CHROMIUM.is_file(), "Debian's chromium package is needed (apt-get install chromium; .ci/run does)"
    shutil.copytree(trained_once, tmp_path / "logs")
    checkpoint = next((tmp_path / "logs/tiny/version_0/checkpoints").glob("best-*.ckpt"))
    images = make_image_folder(tmp_path / "new", classes=3, per_class=2, seed=11)
    monkeypatch.chdir(tmp_path)
    main(tiny_args(tmp_path / "images", "--ckpt_path", str(checkpoint), "--data.predict_dir", str(images),
                   "--trainer.logger.init_args.name", "predicted", subcommand="predict"))
    expected = read_rows(tmp_path / "logs/predicted/version_0/predictions.csv")
    (tmp_path / "notes.png").write_text("a text file named like an image")

    started_in = tmp_path / "started_here"
    started_in.mkdir()
    port = free_port()
    process = start_cli(started_in, "demo", "--model", str(checkpoint), "--port", str(port), "--examples",
                        str(images), start_new_session=True,
                        env={"GRADIO_TEMP_DIR": str(tmp_path / "gradio"), "LIT_SERVER_API_KEY": KEY})
    outside: list[str] = []
    try:
        wait_until_up(process, f"http://127.0.0.1:{port}/")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
            page = browser.new_page()
            page.on("request", lambda request: outside.append(request.url) if not request.url.startswith(
                (f"http://127.0.0.1:{port}", f"http://localhost:{port}", "data:", "blob:")) else None)
            page.goto(f"http://127.0.0.1:{port}/")
            log_in(page, "not the key")  # refused, and asked again
            page.get_by_text("Incorrect Credentials").wait_for(timeout=30_000)
            log_in(page, KEY)
            upload = page.locator("#image input[type=file]")
            upload.wait_for(state="attached", timeout=60_000)

            upload.set_input_files(str(tmp_path / "notes.png"))  # not an image: an error, and the page goes on
            page.get_by_text("notes.png could not be read as an image").wait_for(timeout=60_000)
            page.locator("#image button[aria-label='Remove Image']").click()

            for number, row in enumerate(expected[:2]):
                upload.set_input_files(row["path"])
                verdict = page.locator("#verdict")
                verdict.get_by_text(f"probability {float(row['confidence']):.3f}").wait_for(timeout=60_000)
                assert verdict.inner_text().startswith(row["prediction"] if row["unsure"] == "false" else "Unsure")
                top = page.locator("#top-classes").inner_text().split("\n")
                assert row["prediction"] in top[:3]  # the chart's heading names the top class
                assert page.locator("#cam img").count() == 1
                if number == 0:
                    page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
                page.locator("#image button[aria-label='Remove Image']").click()
            browser.close()
    finally:
        output, error = stop(process)
    assert process.returncode == 0 and "Traceback" not in error, error[-3000:]
    assert outside == []  # offline: no analytics, fonts or version checks
    assert list(started_in.iterdir()) == []  # no flagging folder, no example cache
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    if os.environ.get("DEMO_SCREENSHOT"):
        shutil.copy(tmp_path / "demo.png", os.environ["DEMO_SCREENSHOT"])


@pytest.mark.parametrize(("option", "value", "words"), [
    ("--port", "22", ["--port", "1024 and 65535"]),
    ("--model", "nowhere.onnx", ["--model nowhere.onnx", "does not exist"]),
    ("--examples", "nowhere", ["--examples nowhere", "does not exist"]),
], ids=lambda value: str(value))
def test_a_bad_demo_option_is_one_line(trained, tmp_path, capsys, option, value, words):
    options = {"--model": str(next((trained / "checkpoints").glob("best-*.ckpt"))), option: value}
    with pytest.raises(SystemExit) as exit_code:
        main(["demo", *[part for pair in options.items() for part in pair]])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert exit_code.value.code == 2 and len(errors) == 1
    assert all(word in errors[0] for word in words), errors[0]
