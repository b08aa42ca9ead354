"""The browser console: a page for every role (search with images, live hits
and their verification, hotlists, approvals, fleet, a business's own cameras, the access log and its verification), each
with a JSON twin under ``/api/v1``, served over HTTPS by ``alpr-central serve``.

Modules: :mod:`.auth` (passwords, sign-in, lockout, sessions), :mod:`.app`
(the Starlette application: routes, CSRF, security headers), the page views
:mod:`.operator`, :mod:`.hitsview`, :mod:`.oversight` and :mod:`.fleetview` over the governance
and fleet libraries (which check every permission), :mod:`.geomap` (offline
maps), :mod:`.openapi`, :mod:`.server` (certificate and uvicorn). Templates,
the stylesheet and the live hits page's script ship in the package: no CDN, no internet needed.
"""
