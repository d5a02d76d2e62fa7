"""A bare FastAPI app: the floor every "x bare" ratio in bench/ is taken against.

One route, no middleware, no database: what FastAPI on the same uvicorn costs before the
service does anything. Run it as the service is run (`uvicorn bench.bare:app`).
"""

from fastapi import FastAPI

app = FastAPI()


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
