"""The OpenAPI 3.1 document of ``/api/v1``, made from the same page table the
routes are made from (so it cannot drift from them)."""

from __future__ import annotations

import re

from .. import __version__

_ERROR = {"description": "refused", "content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}}}}}


def document(pages) -> dict:
    paths: dict = {}
    for page in pages:
        path = "/api/v1" + page.path
        path_params = re.findall(r"{(\w+)}", page.path)
        params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in path_params]
        params += [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}} for n in page.params]
        ops = {"get": {"summary": page.summary, "operationId": "get" + re.sub(r"\W", "_", page.path),
                       "parameters": params,
                       "responses": {"200": {"description": "the page's data as JSON"}, "400": _ERROR,
                                     "401": _ERROR, "403": _ERROR}}}
        if page.action:
            ops["post"] = {"summary": page.summary, "operationId": "post" + re.sub(r"\W", "_", page.path),
                           "parameters": params[:len(path_params)],
                           "requestBody": {"content": {
                               "multipart/form-data" if "file" in page.action_params
                               else "application/x-www-form-urlencoded": {"schema": {
                                   "type": "object",
                                   "properties": {n: {"type": "string", **({"format": "binary"} if n == "file"
                                                                          else {})}
                                                  for n in page.action_params}}}}},
                           "responses": {"200": {"description": "done; the page's data"}, "400": _ERROR,
                                         "401": _ERROR, "403": _ERROR}}
        paths.setdefault(path, {}).update(ops)
    for part in ("crop", "context"):
        paths[f"/api/v1/reads/{{read_id}}/{part}"] = {"get": {
            "summary": f"A read's {part} image (JPEG); purpose and case required; logged (image-view).",
            "operationId": f"get_read_{part}",
            "parameters": [{"name": "read_id", "in": "path", "required": True, "schema": {"type": "string"}},
                           {"name": "purpose", "in": "query", "required": True, "schema": {"type": "string"}},
                           {"name": "case", "in": "query", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "JPEG", "content": {"image/jpeg": {}}}, "400": _ERROR,
                          "401": _ERROR, "403": _ERROR}}}
    paths["/api/v1/hits/stream"] = {"get": {
        "summary": "New hits as server-sent events: 'event: hit', 'id:' the hit id, 'data:' the hit's JSON (no "
                   "images); resumes after the Last-Event-ID header or 'after'; keep-alive comments every 15 s. "
                   "Needs view-hits (refused before any byte). Opening is logged (hits-watch).",
        "operationId": "get_hits_stream",
        "parameters": [{"name": "after", "in": "query", "required": False, "schema": {"type": "integer"}},
                       {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "an event stream", "content": {"text/event-stream": {}}},
                      "401": _ERROR, "403": _ERROR}}}
    paths["/api/v1/me"] = {"get": {"summary": "Who the credential authenticates as, and the pages of their role.",
                                   "operationId": "get_me", "responses": {"200": {"description": "the user"},
                                                                          "401": _ERROR}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "ALPR central console API", "version": __version__,
                 "description": "Every HTML page of the console has this JSON twin with the same permissions. "
                                "Authenticate with a personal token (Authorization: Bearer alpr_...). "
                                "A browser session may call it too; its POSTs carry X-CSRF-Token."},
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "a personal token (alpr_...)"},
            "session": {"type": "apiKey", "in": "cookie", "name": "__Host-alpr_session"}}},
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
    }
