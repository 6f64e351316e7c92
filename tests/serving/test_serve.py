"""``serve`` as a client meets it: a real server process on a loopback port, answering concurrent requests as
``predict`` answers the same images, refusing bad uploads with a 4xx while it keeps serving, and writing nothing
where it was started."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import psutil
import pytest
import requests
from PIL import Image

from lightning_resnet.cli import main
from lightning_resnet.cli.options import check_address

from ..conftest import (
    decision_in,
    free_port,
    make_image_folder,
    read_rows,
    start_cli,
    stop,
    tiny_args,
    wait_until_up,
)

pytestmark = pytest.mark.slow  # every test asks a real serve process


@pytest.fixture(scope="module")
def service(tmp_path_factory, trained_once):
    """The tiny model of ``trained_once`` served by a real ``serve`` process (batches of up to 8) with the embeddings
    of the images sent to it (``/similar``), and ``predict``'s predictions.csv of the same images."""
    root = tmp_path_factory.mktemp("serve")
    shutil.copytree(trained_once, root / "logs")
    checkpoint = next((root / "logs/tiny/version_0/checkpoints").glob("best-*.ckpt"))
    images = make_image_folder(root / "new", classes=3, per_class=6, seed=7)
    previous = os.getcwd()
    os.chdir(root)
    try:
        main(tiny_args(root / "images", "--ckpt_path", str(checkpoint), "--data.predict_dir", str(images),
                       "--trainer.logger.init_args.name", "predicted", subcommand="predict"))
        embeddings = main(["embed", "--model", str(checkpoint), "--input", str(images), "--output",
                           str(root / "new.npz")])
    finally:
        os.chdir(previous)
    expected = {row["path"]: row for row in read_rows(root / "logs/predicted/version_0/predictions.csv")}
    started_in = root / "started_here"
    started_in.mkdir()
    port = free_port()
    # its key from the environment, as a deployment gives it; /health stays open
    process = start_cli(started_in, "serve", "--model", str(checkpoint), "--port", str(port), "--max_batch_size", "8",
                        "--embeddings", str(embeddings), start_new_session=True, env={"LIT_SERVER_API_KEY": KEY})
    url = f"http://127.0.0.1:{port}"
    wait_until_up(process, f"{url}/health")
    yield SimpleNamespace(url=url, checkpoint=checkpoint, expected=expected, started_in=started_in,
                          embeddings=embeddings, root=root)
    output, error = stop(process)
    assert process.returncode == 0, error[-3000:]
    assert "Traceback" not in error, error[-3000:]
    assert list(started_in.iterdir()) == []  # no client.py, no logs: nothing where it was started


KEY = "a key only the tests know"
WITH_KEY = {"X-API-Key": KEY}


def post(url: str, path: str, as_multipart: bool) -> requests.Response:
    data = Path(path).read_bytes()
    if as_multipart:
        return requests.post(f"{url}/predict", files={"file": (Path(path).name, data)}, headers=WITH_KEY, timeout=60)
    return requests.post(f"{url}/predict", data=data, headers={"Content-Type": "application/octet-stream",
                                                               **WITH_KEY}, timeout=60)


def test_64_concurrent_requests_are_answered_as_predict_answers_them(service):
    paths = sorted(service.expected)
    jobs = [(paths[index % len(paths)], index % 2 == 1) for index in range(64)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda job: post(service.url, *job), jobs))
    assert [response.status_code for response in responses] == [200] * 64
    for (path, _), response in zip(jobs, responses):
        served, predicted = response.json(), service.expected[path]
        assert served["prediction"] == predicted["prediction"], path
        assert served["unsure"] == (predicted["unsure"] == "true"), path
        assert served["energy_score"] == pytest.approx(float(predicted["energy_score"]), abs=1e-4)
        written = dict(zip(predicted["top5_classes"].split("|"),
                           map(float, predicted["top5_probabilities"].split("|"))))
        assert [entry["class"] for entry in served["top"]] == list(written)
        assert all(abs(entry["probability"] - written[entry["class"]]) <= 1e-4 for entry in served["top"])
        assert served["model"] == {"name": "tiny", "version": served["model"]["version"]}
    assert len({response.json()["model"]["version"] for response in responses}) == 1


def test_info_tells_the_models_classes_input_and_calibration(service):
    info = requests.get(f"{service.url}/info", headers=WITH_KEY, timeout=10).json()["model"]
    state = decision_in(service.checkpoint)
    assert info["classes"] == ["class_0", "class_1", "class_2"] and info["name"] == "tiny"
    assert info["preprocessing"]["image_size"] == 16 and len(info["preprocessing"]["mean"]) == 3
    assert info["decision"]["temperature"] == pytest.approx(float(state["temperature"]))
    assert info["decision"]["reject_below"] == pytest.approx(float(state["reject_below"]))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def bad_requests() -> dict[str, tuple[dict, int, str]]:
    """Each bad request as ``requests.post`` arguments, the status it must get and a word of its error."""
    jpeg = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(jpeg, "JPEG")
    octet = {"Content-Type": "application/octet-stream"}
    return {
        "empty body": ({"data": b"", "headers": octet}, 400, "holds no image"),
        "text file": ({"data": b"hello, this is not an image\n" * 20, "headers": octet}, 415, "not an image"),
        "text/plain body": ({"data": b"hello", "headers": {"Content-Type": "text/plain"}}, 415, "not an image"),
        "truncated JPEG": ({"data": jpeg.getvalue()[: len(jpeg.getvalue()) // 2], "headers": octet}, 400,
                           "truncated"),
        "12000x12000 PNG": ({"data": png_bytes(Image.new("1", (12000, 12000))), "headers": octet}, 413,
                            "144,000,000 pixels"),
        "unknown field": ({"files": {"photo": ("a.png", png_bytes(Image.new("RGB", (20, 20))))}}, 400,
                          "unknown field 'photo'"),
        "text field": ({"files": {"file": (None, "just text")}}, 400, "must be a file"),
        "JSON body": ({"json": {"image": "abc"}}, 415, "application/json"),
        "two files": ({"files": [("file", ("a.png", png_bytes(Image.new("RGB", (8, 8))))),
                                 ("file", ("b.png", png_bytes(Image.new("RGB", (8, 8)))))]}, 400,
                      "more than one file"),
        "malformed multipart": ({"data": b"--x\r\nnot the parts it announces",
                                 "headers": {"Content-Type": "multipart/form-data; boundary=x"}}, 400,
                                "unreadable multipart body"),
    }


def test_bad_requests_get_a_4xx_with_one_line_and_the_server_keeps_serving(service):
    requests_ = {**bad_requests(), "no key": ({"data": b"x"}, 401, "X-API-Key"),
                 "a wrong key": ({"data": b"x", "headers": {"X-API-Key": "not the key"}}, 401, "not it"),
                 "an unknown path": ({"data": b"x", "url": f"{service.url}/nowhere"}, 404, "Not Found")}
    for name, (arguments, status, words) in requests_.items():
        arguments = {"url": f"{service.url}/predict", "timeout": 60, **arguments}
        if name not in ("no key", "a wrong key"):
            arguments["headers"] = {**arguments.get("headers", {}), **WITH_KEY}
        response = requests.post(**arguments)
        assert response.status_code == status, (name, response.text)
        message = response.json()["error"]
        assert words in message and "\n" not in message, (name, message)
    assert requests.get(f"{service.url}/health", timeout=10).text == "ok"  # open without the key
    path = sorted(service.expected)[0]
    assert post(service.url, path, as_multipart=False).json()["prediction"] == service.expected[path]["prediction"]


@pytest.mark.parametrize(("option", "value", "words"), [
    ("--port", "80", ["--port", "1024 and 65535"]),
    ("--host", "10.1.2.3", ["--host 10.1.2.3", "127.0.0.1"]),
    ("--max_batch_size", "0", ["--max_batch_size", "at least 1"]),
    ("--batch_timeout", "-1", ["--batch_timeout"]),
    ("--workers", "0", ["--workers"]),
    ("--reject_below", "nan", ["--reject_below", "energy score"]),
    ("--top_k", "0", ["--top_k"]),
    ("--model", "nowhere.ckpt", ["--model nowhere.ckpt", "does not exist"]),
    ("--model", "notes.txt", ["--model notes.txt", "not a checkpoint", "a text file"]),
    ("--max_upload_mb", "0", ["--max_upload_mb"]),
    ("--accelerator", "mps", ["--accelerator mps", "--accelerator cpu"]),  # Apple's GPU: never on Linux
], ids=lambda value: str(value))
def test_a_bad_serve_option_is_one_line(service, tmp_path, monkeypatch, capsys, option, value, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not a model")
    options = {"--model": str(service.checkpoint), option: value}
    with pytest.raises(SystemExit) as exit_code:
        main(["serve", *[part for pair in options.items() for part in pair]])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert exit_code.value.code == 2 and len(errors) == 1
    assert all(word in errors[0] for word in words), errors[0]


def test_serving_beyond_this_machine_without_a_key_says_so(service, capsys, monkeypatch):
    monkeypatch.delenv("LIT_SERVER_API_KEY", raising=False)
    with pytest.raises(SystemExit):  # the model is missing: it stops after the warning, before loading anything
        main(["serve", "--model", "nowhere.ckpt", "--host", "0.0.0.0", "--port", str(free_port())])
    warning = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:"))
    assert "without a key" in warning and "LIT_SERVER_API_KEY" in warning


def test_a_port_in_use_is_one_line(service, capsys):
    port = service.url.rsplit(":", 1)[1]
    with pytest.raises(SystemExit) as exit_code:
        main(["serve", "--model", str(service.checkpoint), "--port", port])
    error = capsys.readouterr().err
    assert exit_code.value.code == 2 and f"--port {port}" in error and "another" in error


def test_the_answer_says_unsure_against_the_models_threshold(service):
    info = json.loads(requests.get(f"{service.url}/info", headers=WITH_KEY, timeout=10).text)["model"]
    path = sorted(service.expected)[0]
    answer = post(service.url, path, as_multipart=True).json()
    assert answer["reject_below"] == pytest.approx(info["decision"]["reject_below"])
    assert answer["unsure"] == (answer["energy_score"] < answer["reject_below"])


def test_an_exported_onnx_is_served_as_its_checkpoint(service, tmp_path):
    """The inference worker's steps (setup, predict of a batch, the answer) for the .onnx and the checkpoint."""
    from lightning_resnet.serving.api import ClassifierAPI
    from lightning_resnet.serving.served import ServedModel, identity
    from lightning_resnet.serving.uploads import UploadLimits, prepare

    exported = tmp_path / "model.onnx"
    main(["export", "--ckpt_path", str(service.checkpoint), "--output", str(exported)])
    paths = sorted(service.expected)[:5]
    answers = {}
    for path in (service.checkpoint, exported):
        name, version = identity(path)
        api = ClassifierAPI(ServedModel(path, name, version, top_k=3, reject_below=1.5), None, UploadLimits(), 8)
        ctrl_c = signal.getsignal(signal.SIGINT)
        api.setup("cpu")  # a worker ignores Ctrl-C (its server stops it): this process must not
        signal.signal(signal.SIGINT, ctrl_c)
        crops = np.stack([prepare(Path(image).read_bytes(), api.model.view, UploadLimits()) for image in paths])
        answers[path.suffix] = [api.encode_response(said)["answer"] for said in api.predict(crops)]
    for from_checkpoint, from_onnx, path in zip(answers[".ckpt"], answers[".onnx"], paths):
        assert from_onnx["prediction"] == from_checkpoint["prediction"] == service.expected[path]["prediction"]
        assert from_onnx["confidence"] == pytest.approx(from_checkpoint["confidence"], abs=1e-5)
        assert from_onnx["energy_score"] == pytest.approx(from_checkpoint["energy_score"], abs=1e-4)
        assert from_onnx["unsure"] == (from_onnx["energy_score"] < 1.5)


def test_similar_answers_the_nearest_embedded_images_as_the_similar_command_does(service):
    from lightning_resnet.cli import main as cli

    queries = sorted(service.expected)[:3]
    answers = [requests.post(f"{service.url}/similar?k=4", data=Path(query).read_bytes(), headers=WITH_KEY,
                             timeout=60) for query in queries]
    assert [answer.status_code for answer in answers] == [200] * 3, [answer.text for answer in answers]
    found = cli(["similar", "--embeddings", str(service.embeddings), "--image", str(Path(queries[0]).parent),
                 "--k", "4", "--output", str(service.root / "similar")])
    expected = {}
    for row in read_rows(found):
        expected.setdefault(row["query"], []).append((row["path"], float(row["distance"])))
    for query, answer in zip(queries, answers):
        neighbours = answer.json()["neighbours"]
        assert neighbours[0]["path"] == query and neighbours[0]["distance"] < 1e-5  # itself, first
        assert [each["rank"] for each in neighbours] == [1, 2, 3, 4]
        assert [each["path"] for each in neighbours] == [path for path, _ in expected[query]]
        assert all(abs(each["distance"] - distance) < 1e-4
                   for each, (_, distance) in zip(neighbours, expected[query]))
        assert answer.json()["model"]["name"] == "tiny"
    for k, words in (("0", "k=0"), ("many", "k=many")):
        refused = requests.post(f"{service.url}/similar?k={k}", data=Path(queries[0]).read_bytes(),
                                headers=WITH_KEY, timeout=60)
        assert refused.status_code == 422 and words in refused.json()["error"], refused.text
    not_an_image = requests.post(f"{service.url}/similar", data=b"not an image", headers=WITH_KEY, timeout=60)
    assert 400 <= not_an_image.status_code < 500 and "\n" not in not_an_image.json()["error"]
    assert requests.post(f"{service.url}/similar", data=b"x", timeout=60).status_code == 401  # the key, as /predict
    again = requests.post(f"{service.url}/similar?k=1", data=Path(queries[1]).read_bytes(), headers=WITH_KEY,
                          timeout=60)
    assert again.json()["neighbours"][0]["path"] == queries[1]  # and it goes on serving


def test_embeddings_of_another_model_are_one_line(service, tmp_path, capsys):
    from lightning_resnet.inference.similarity import Embeddings

    other = Embeddings(("a.png",), np.ones((1, 7), np.float32), "another.ckpt").save(tmp_path / "other.npz")
    for given, words in ((other, ["--embeddings", "holds 7 features", "gives 128"]),
                         (tmp_path / "missing.npz", ["--embeddings", "does not exist"])):
        with pytest.raises(SystemExit) as exit_code:
            main(["serve", "--model", str(service.checkpoint), "--port", str(free_port()), "--embeddings", str(given)])
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert exit_code.value.code == 2 and len(errors) == 1 and all(word in errors[0] for word in words), errors


def test_a_server_killed_outright_leaves_nothing_serving(service, tmp_path):
    """SIGKILL to serve's own process (as the OOM killer sends it) runs none of its shutdown: the processes it started
    (LitServe's HTTP processes, forked, and its inference worker, spawned) see it gone and end, and the port is
    free again."""
    exported = tmp_path / "model.onnx"
    main(["export", "--ckpt_path", str(service.checkpoint), "--output", str(exported)])
    port = free_port()
    process = start_cli(tmp_path, "serve", "--model", str(exported), "--port", str(port), start_new_session=True)
    wait_until_up(process, f"http://127.0.0.1:{port}/health")
    without = requests.post(f"http://127.0.0.1:{port}/similar", data=b"x", timeout=30)
    assert without.status_code == 404 and "--embeddings" in without.json()["error"]  # started without them
    started = psutil.Process(process.pid).children(recursive=True)
    assert started  # the HTTP process and the inference worker at least
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    gone, alive = psutil.wait_procs(started, timeout=15)
    assert not alive, [each.cmdline() for each in alive]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
    check_address("127.0.0.1", port)  # a new server may listen there
