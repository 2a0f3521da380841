"""The baseline of bench.packages_page: a bare FastAPI JSON hello-world.

Run as our apis run (one uvicorn process, uvloop, no access log).
"""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def hello() -> dict[str, str]:
    return {"hello": "world"}
