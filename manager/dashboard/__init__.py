"""The live dashboard the manager serves (`podium manager --dashboard ADDR`, README
"Dashboard"): nodes, services, tasks, the event stream, load charts and secrets' names, over
HTTPS, for the users the Control API knows, each seeing what their role may.

- `_sessions.py`: login tokens and sessions (pure).
- `_views.py`: what each page shows, as JSON rows (pure).
- `_feed.py`: one store watch feeding every open page's event stream; revocation.
- `_server.py`: `Dashboard`, the aiohttp app: TLS, the session cookie, the endpoints.
- `static/`: the page (HTML, CSS and its own JavaScript; nothing fetched from elsewhere).
"""

from podium.manager.dashboard._server import DEFAULT_LISTEN, Dashboard
from podium.manager.dashboard._sessions import SessionBook

__all__ = ["DEFAULT_LISTEN", "Dashboard", "SessionBook"]
