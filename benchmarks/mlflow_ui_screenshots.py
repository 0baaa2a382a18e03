"""Screenshots of MLflow's own UI showing a model's lineage, for the README (``docs/img/``).

    .venv/bin/python -m benchmarks.mlflow_ui_screenshots [--out runs/mlflow-ui] [--img docs/img]

1. a tiny synthetic RadImageNet, sharded; a 2-epoch heated model (stage 1) and a 2-epoch
   fine-tune of it from ``models:/pgnm-heated-resnet10t@current`` (stage 2), one CPU rank each,
   into the embedded sqlite store under ``<out>/runs/mlflow`` (skipped when already there);
2. ``mlflow server`` on 127.0.0.1 over that store;
3. headless Chromium (Debian's ``chromium``) driven over the DevTools protocol on a pipe (no
   port, no extra package): each page is loaded, waited for until its content is there, and
   captured at 1600x1000:

   - ``mlflow-model-version.png``: the fine-tuned model's registered version: the model card
     as its description, source run and LoggedModel, the alias;
   - ``mlflow-logged-model.png``: its LoggedModel: READY, source run, the datasets it used,
     its registered version, and its epoch metrics, each naming the split's dataset;
   - ``mlflow-run-dataset.png``: the fine-tune run with its ``train`` dataset input opened:
     digest (the manifest's plan hash), source (the data root), profile (split counts).

About 2 minutes on 2 cores, most of it the two training runs.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The tests' tiny run (tests/launching.py): a CPU step takes a fraction of a second.
TINY = ["model.arch=resnet10t", "policy.hidden_dim=16", "mask.grid=8", "mask.kernel_size=3",
        "mask.sigma=1.0", "data.image_size=32", "data.eval_resize=36", "data.batch_size=8",
        "data.num_workers=1", "data.shuffle_buffer=16", "schedule.epochs=2", "optim.lr=0.01",
        "tracking.log_every=1", "engine.device=cpu"]
HEATED = "pgnm-heated-resnet10t"
TUNED = "pgnm-finetuned-resnet10t"
MAX_BYTES = 300_000  # per PNG in the repository


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build(out: Path) -> Path:
    """The two runs' store; returns the runs directory."""
    shards, runs = out / "shards", out / "runs"
    if not (shards / "dataset.json").is_file():
        sys.path.insert(0, str(ROOT))
        from data_tools.radimagenet_to_wds import main as shard
        from data_tools.synth.generate import generate_radimagenet

        generate_radimagenet(out / "raw", classes=6, total=168, size=40, seed=0, balanced=True,
                             progress=False)
        shard(["--src", str(out / "raw"), "--out", str(shards), "--samples-per-shard", "24",
               "--workers", "1"])
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        env.pop(var, None)
    for script, name, extra in (("pretrain.py", "heated", []),
                                ("finetune.py", "tuned", [f"model.init=models:/{HEATED}@current"])):
        if (runs / name / "summary.json").is_file():
            continue
        print(f"training {name} ...", flush=True)
        subprocess.run([sys.executable, str(ROOT / "launch" / script), *TINY,
                        f"data.root={shards}", f"run_dir={runs}", f"name={name}", *extra],
                       cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return runs


@contextlib.contextmanager
def serve(runs: Path):  # noqa: ANN201 - Iterator[str]
    """``mlflow server`` on loopback over the run directory's embedded store."""
    port = _free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{runs / 'mlflow' / 'mlflow.db'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("mlflow server did not come up") from None
                time.sleep(0.5)
        yield uri
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


class Browser:
    """Headless Chromium, spoken to in the DevTools protocol over ``--remote-debugging-pipe``
    (fd 3 in, fd 4 out, NUL-terminated JSON)."""

    def __init__(self, width: int = 1600, height: int = 1000) -> None:
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        to_child, self._writer = os.pipe()
        self._reader, from_child = os.pipe()

        def fds() -> None:  # in the child, before exec: copies first, either may be 3 or 4
            inbound, outbound = os.dup(to_child), os.dup(from_child)
            os.dup2(inbound, 3)
            os.dup2(outbound, 4)

        self.proc = subprocess.Popen(
            [shutil.which("chromium") or "chromium", "--headless", "--no-sandbox",
             "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={self.profile}",
             f"--window-size={width},{height}", "--remote-debugging-pipe", "about:blank"],
            close_fds=False, preexec_fn=fds, stdout=subprocess.DEVNULL,  # dup2: inheritable
            stderr=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        self._buffer, self._id = b"", 0
        page = next(t for t in self.call("Target.getTargets")["targetInfos"]
                    if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", targetId=page["targetId"],
                                 flatten=True)["sessionId"]
        # the viewport itself (--window-size alone leaves room for a window frame)
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params: object) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if method != "Target.getTargets" and method != "Target.attachToTarget":
            message["sessionId"] = self.session
        os.write(self._writer, json.dumps(message).encode() + b"\0")
        while True:  # events arrive in between: skipped
            while b"\0" not in self._buffer:
                chunk = os.read(self._reader, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed its DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})

    def js(self, expression: str) -> object:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.js(expression):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the page never showed {what}")
            time.sleep(0.3)
        time.sleep(1.5)  # let late requests (metrics, datasets) fill in

    def goto(self, url: str, text: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for(f"document.body.innerText.includes({json.dumps(text)})", repr(text))
        # MLflow opens its assistant panel on loopback; it hides a third of every page
        self.js("document.querySelector('[data-component-id=\"mlflow.assistant.chat_panel.close\"]"
                ", button[aria-label=\"Close\"]')?.click()")
        time.sleep(0.5)

    def click_text(self, text: str) -> None:
        found = self.js(f"""(() => {{
            const all = [...document.querySelectorAll('a, button, [role=button], span')];
            const hit = all.find(e => e.textContent.trim().startsWith({json.dumps(text)}));
            if (hit) hit.click();
            return !!hit; }})()""")
        if not found:
            raise RuntimeError(f"nothing to click reads {text!r}")

    def screenshot(self, path: Path) -> Path:
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if path.stat().st_size > MAX_BYTES:  # a palette of 256 colours: UI text stays sharp
            from PIL import Image

            Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)
        print(f"{path} ({path.stat().st_size // 1000} kB)")
        return path

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.profile, ignore_errors=True)


def capture(runs: Path, img: Path) -> list[Path]:
    summary = json.loads((runs / "tuned" / "summary.json").read_text())
    model_id, run_id = summary["registered"]["model_id"], summary["mlflow_run_id"]
    version = summary["registered"]["version"]
    with serve(runs) as uri:
        from mlflow import MlflowClient

        experiment = MlflowClient(uri).get_run(run_id).info.experiment_id
        browser = Browser()
        try:
            shots = []
            browser.goto(f"{uri}/#/models/{TUNED}/versions/{version}", "Lineage")
            shots.append(browser.screenshot(img / "mlflow-model-version.png"))
            browser.goto(f"{uri}/#/experiments/{experiment}/models/{model_id}", "Metrics (")
            shots.append(browser.screenshot(img / "mlflow-logged-model.png"))
            browser.goto(f"{uri}/#/experiments/{experiment}/runs/{run_id}", "shards/train")
            browser.click_text("shards/train")
            browser.wait_for("document.body.innerText.includes('Source type')", "the dataset")
            shots.append(browser.screenshot(img / "mlflow-run-dataset.png"))
            return shots
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "mlflow-ui")
    parser.add_argument("--img", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args(argv)
    if shutil.which("chromium") is None:
        raise SystemExit("chromium is not installed: apt-get install -y chromium")
    capture(build(args.out), args.img)


if __name__ == "__main__":
    main()
