"""``adaptlab ui``: a local page over a runs folder -- every comparison and run, live progress and loss curves,
finished reports, generations side by side -- and a form that starts a comparison.

FastAPI serves one static page (``static/index.html``: plain HTML, CSS and JavaScript, no CDN, nothing fetched
from outside) and a small JSON API it polls. A comparison started from the form runs as ``python -m adaptlab
compare ...`` in a child process: the CLI's own code path and error lines, and the server stays responsive
while it trains. The runs folder is read as the runs write it (:mod:`.folders`); report files are served from it
read-only.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from .folders import PARTIAL, scan, steps

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")


class CompareRequest(BaseModel):
    name: str = Field(pattern=NAME.pattern)
    """The comparison's folder under the runs folder."""
    recipe: str | None = None
    data: str | None = None
    strategies: str | None = None
    backbone: str | None = None
    epochs: str | None = None
    max_train: int | None = Field(None, ge=1)

    def arguments(self) -> list[str]:
        args = [self.recipe] if self.recipe else []
        for flag, value in (("--data", self.data), ("--strategies", self.strategies), ("--backbone", self.backbone),
                            ("--epochs", self.epochs), ("--max-train", self.max_train)):
            if value not in (None, ""):
                args += [flag, str(value)]
        return args


@dataclass
class Job:
    process: subprocess.Popen
    log: Path

    def describe(self) -> dict[str, Any]:
        code = self.process.poll()
        lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines() if self.log.is_file() else []
        errors = [line for line in lines if line.startswith("error:")]
        return {"running": code is None, "exit_code": code, "error": errors[-1] if errors else None, "last": lines[-1] if lines else ""}


def create_app(root: Path) -> FastAPI:
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    jobs: dict[str, Job] = {}
    app = FastAPI(title="adaptlab ui")
    app.mount("/files", StaticFiles(directory=root), name="files")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse({"error": f"{field}: {first.get('msg')}" if field else str(first.get("msg"))}, status_code=400)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return (files("adaptlab.ui") / "static" / "index.html").read_text(encoding="utf-8")

    @app.get("/api/entries")
    async def entries() -> dict[str, Any]:
        live = {root / f"{name}{PARTIAL}" for name, job in jobs.items() if job.process.poll() is None}
        return {"root": str(root), "entries": scan(root, live), "jobs": {name: job.describe() for name, job in jobs.items()}}

    @app.get("/api/steps")
    async def step_lines(path: str, after: int = 0) -> Any:
        folder = (root / path).resolve()
        if root not in folder.parents:
            return JSONResponse({"error": "path: not inside the runs folder"}, status_code=400)
        return {"steps": steps(folder, after)}

    @app.get("/api/recipes")
    async def recipes() -> dict[str, list[str]]:
        return {"recipes": sorted(p.name.removesuffix(".yaml") for p in files("adaptlab.recipes").iterdir() if p.name.endswith(".yaml"))}

    @app.post("/api/compare")
    async def compare(body: CompareRequest) -> Any:
        if not body.recipe and not body.data:
            return JSONResponse({"error": "give a recipe or data"}, status_code=400)
        out = root / body.name
        if out.exists() or out.with_name(out.name + PARTIAL).exists() or (body.name in jobs and jobs[body.name].process.poll() is None):
            return JSONResponse({"error": f"name: {body.name} exists in {root}; choose another"}, status_code=400)
        log = root / f"{body.name}.log"
        with log.open("w", encoding="utf-8") as sink:
            process = subprocess.Popen([sys.executable, "-m", "adaptlab", "compare", *body.arguments(), "-o", str(out), "-q"],
                                       stdout=sink, stderr=subprocess.STDOUT, cwd=root)
        jobs[body.name] = Job(process, log)
        return {"name": body.name, "command": "adaptlab compare " + " ".join(body.arguments())}

    return app
