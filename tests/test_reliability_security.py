"""Security: who may talk to the server, and what it gives away.

The server runs next to a user's model and data for hours. It binds 127.0.0.1 unless told
otherwise; binding elsewhere always takes a token; without the token nothing but the health
check answers; a web page on another site can neither post a form to it nor reach it through
DNS rebinding; errors carry no traceback and there is no debugger; static files stay inside
the static folder; the launcher refuses bad file paths with one line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from reliability_helpers import make_visualizer, raw_http, serving, status_of

from insights_app.limits import MAX_BODY_BYTES
from insights_app.transport import access
from insights_app.transport import server as server_module
from insights_app.transport.server import create_app
from insights_app.transport.serving import start_server

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "s3cret-token-for-tests-0123456789"
POST_ROUTES = ["/api/v1/examples", "/api/v1/attribute"]
GET_ROUTES = ["/", "/static/app.js", "/api/v1/config", "/api/v1/openapi.json"]


@pytest.fixture(scope="module")
def vis():
    return make_visualizer()


# ------------------------------------------------------------------ binding


def test_default_bind_is_loopback_only(vis):
    port = vis.serve(quiet=True)
    try:
        handle = vis._servers[-1]
        assert handle.server.socket.getsockname()[0] == "127.0.0.1"
        assert handle.token is None and vis.url == f"http://127.0.0.1:{port}/"
    finally:
        vis.stop()
    from insights_app.cli.arguments import parse_args

    assert parse_args(["--model", "m:f", "--data", str(ROOT)]).host == "127.0.0.1"


@pytest.mark.parametrize(
    "host,loopback",
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("", False),
        ("::", False),
        ("192.168.1.20", False),
        ("10.0.0.1", False),
        ("example.com", False),
        ("localhost.example.com", False),
        ("127.0.0.1.nip.io", False),
    ],
)
def test_which_binds_count_as_loopback(host, loopback):
    assert access.is_loopback(host) is loopback


@pytest.mark.parametrize("host", ["0.0.0.0", "", "::", "192.168.1.20"])
def test_binding_elsewhere_without_a_token_is_refused_before_anything_listens(vis, host, monkeypatch):
    import waitress.server

    def must_not_bind(*args, **kwargs):
        raise AssertionError("the server tried to bind")

    monkeypatch.setattr(waitress.server, "create_server", must_not_bind)
    with pytest.raises(ValueError, match="without a token"):
        start_server(vis, host=host, token="", quiet=True)
    if host:  # serve(host="") means the default, 127.0.0.1
        with pytest.raises(ValueError, match="without a token"):
            vis.serve(host=host, token="", quiet=True)
    # Given no token at all, one is generated: never an open server on a public address.
    first, second = access.access_token(host, None), access.access_token(host, None)
    assert first and second and first != second and len(first) >= 24


def test_launcher_refuses_a_public_bind_without_a_token(vis, monkeypatch, capsys):
    import waitress.server

    from insights_app.cli import CliError
    from insights_app.cli.serve import serve

    monkeypatch.setattr(
        waitress.server,
        "create_server",
        lambda *a, **k: (_ for _ in ()).throw(AssertionError("the server tried to bind")),
    )
    args = SimpleNamespace(host="0.0.0.0", port=0, token="", open=False)
    with pytest.raises((CliError, ValueError), match="token"):
        serve(vis, args, out=lambda message: None)


def test_a_non_loopback_server_requires_its_generated_token(vis, monkeypatch):
    # Pretend 127.0.0.1 were a public address: the server must then generate and enforce a token.
    # (It still binds 127.0.0.1 only: no test opens a port beyond this machine.)
    monkeypatch.setattr(access, "is_loopback", lambda host: False)
    port = vis.serve(host="127.0.0.1", quiet=True)
    try:
        token = vis._servers[-1].token
        assert token and len(token) >= 24 and vis.url.endswith(f"?token={token}")
        base = f"http://127.0.0.1:{port}"
        assert requests.get(base + "/api/v1/config", timeout=10).status_code == 401
        assert requests.get(base + "/api/v1/config", params={"token": token}, timeout=10).status_code == 200
    finally:
        vis.stop()


# ------------------------------------------------------------------ the token


@pytest.fixture(scope="module")
def guarded_url(vis):
    with serving(vis, token=TOKEN) as url:
        yield url


@pytest.mark.parametrize("route", GET_ROUTES + POST_ROUTES)
def test_requests_without_the_token_get_401_and_with_a_wrong_one_403(guarded_url, route):
    method = "POST" if route in POST_ROUTES else "GET"
    body = {"example_id": 0} if route.endswith("attribute") else {}
    missing = requests.request(method, guarded_url + route, json=body, timeout=30)
    assert missing.status_code == 401
    for wrong in (
        {"headers": {"Authorization": "Bearer nope"}},
        {"params": {"token": TOKEN[:-1]}},
        {"cookies": {access.token_cookie_name(TOKEN): "x" * len(TOKEN)}},
        {"headers": {"Authorization": f"Bearer {TOKEN}x"}},
    ):
        r = requests.request(method, guarded_url + route, json=body, timeout=30, **wrong)
        assert r.status_code == 403, (wrong, r.status_code)
        assert "model" not in r.text.lower() or route == "/"  # nothing of the app leaks
    for right in (
        {"headers": {"Authorization": f"Bearer {TOKEN}"}},
        {"headers": {"Authorization": f"token {TOKEN}"}},
        {"params": {"token": TOKEN}},
        {"cookies": {access.token_cookie_name(TOKEN): TOKEN}},
    ):
        r = requests.request(method, guarded_url + route, json=body, timeout=60, **right)
        assert r.status_code == 200, (right, r.status_code, r.text[:200])


def test_refusals_leak_nothing_of_the_data(guarded_url):
    for route in ("/api/v1/config", "/api/v1/openapi.json"):
        r = requests.get(guarded_url + route, timeout=10)
        assert set(r.json()) == {"error"} and "digit" not in r.text and "IntegratedGradients" not in r.text


def test_health_needs_no_token_and_says_nothing_else(guarded_url):
    r = requests.get(guarded_url + "/api/v1/health", timeout=10)
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_the_url_token_becomes_a_strict_httponly_cookie(guarded_url):
    with requests.Session() as s:
        first = s.get(guarded_url + "/", params={"token": TOKEN}, timeout=10)
        assert first.status_code == 200
        cookie = first.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN in cookie
        assert s.get(guarded_url + "/api/v1/config", timeout=10).status_code == 200  # the page keeps working


# ------------------------------------------------------------------ cross-site requests


@pytest.mark.parametrize(
    "content_type,data",
    [
        ("text/plain", '{"page": 0}'),  # what a cross-site <form enctype="text/plain"> or sendBeacon sends
        ("application/x-www-form-urlencoded", "page=0"),
        ("multipart/form-data; boundary=x", '--x\r\nContent-Disposition: form-data; name="page"\r\n\r\n0\r\n--x--\r\n'),
        (None, '{"page": 0}'),
    ],
)
@pytest.mark.parametrize("route", POST_ROUTES)
def test_cross_site_simple_posts_are_refused(vis, route, content_type, data):
    with serving(vis) as url:
        headers = {"Origin": "https://evil.example"}
        if content_type:
            headers["Content-Type"] = content_type
        r = requests.post(url + route, data=data.encode(), headers=headers, timeout=10)
        assert r.status_code == 415 and "application/json" in r.json()["error"]


def test_no_cors_is_granted(vis):
    with serving(vis) as url:
        pre = requests.options(
            url + "/api/v1/examples",
            headers={
                "Origin": "https://evil.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
            timeout=10,
        )
        post = requests.post(
            url + "/api/v1/examples", json={"page_size": 1}, headers={"Origin": "https://evil.example"}, timeout=30
        )
        for r in (pre, post):
            assert not any(h.lower().startswith("access-control-allow") for h in r.headers), dict(r.headers)
        assert post.headers["X-Frame-Options"] == "SAMEORIGIN" and post.headers["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'self'" in post.headers["Content-Security-Policy"]


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "attacker.com:{port}", "127.0.0.1.nip.io:{port}"])
def test_dns_rebinding_is_refused_without_a_token(vis, host):
    with serving(vis) as url:
        port = int(url.rsplit(":", 1)[1])
        header = host.format(port=port)
        for request in (
            f"GET /api/v1/config HTTP/1.1\r\nHost: {header}\r\nConnection: close\r\n\r\n",
            f"GET / HTTP/1.1\r\nHost: {header}\r\nConnection: close\r\n\r\n",
        ):
            answer = raw_http(port, request.encode())
            assert status_of(answer) == 403 and b"digit" not in answer
        ok = raw_http(
            port, f"GET /api/v1/config HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        assert status_of(ok) == 200


# ------------------------------------------------------------------ no debugger, no tracebacks


@pytest.mark.parametrize("debug", [False, True])
def test_unexpected_errors_are_json_without_traceback_even_in_debug_mode(debug, monkeypatch):
    vis = make_visualizer()

    class BrokenMethods(dict):
        def values(self):
            raise RuntimeError("secret detail /home/user/private/model.pt")

    monkeypatch.setattr(vis, "methods", BrokenMethods())
    with serving(vis, debug=debug) as url:
        r = requests.get(url + "/api/v1/config", timeout=10)
        assert r.status_code == 500 and r.json() == {"error": "internal error: RuntimeError"}
        for bad in ("Traceback", "secret detail", "/home/user", "Werkzeug", "debugger", '.py"'):
            assert bad not in r.text
        console = requests.get(url + "/console", timeout=10)
        assert console.status_code == 404 and console.headers["Content-Type"].startswith("application/json")
        assert "__debugger__" not in requests.get(url + "/?__debugger__=yes&cmd=resource&f=style.css", timeout=10).text
    assert create_app(vis).debug is False


def test_bad_http_gets_short_answers_without_server_internals(vis):
    with serving(vis) as url:
        port = int(url.rsplit(":", 1)[1])
        close = b"Host: localhost\r\nConnection: close\r\n"
        for request, status in (
            (b"BREW /api/v1/config HTTP/1.1\r\n" + close + b"\r\n", 405),
            (b"GET /api/v1/%ZZ HTTP/1.1\r\n" + close + b"\r\n", 404),
            (b"POST /api/v1/examples HTTP/1.1\r\n" + close + b"Content-Length: -5\r\n\r\n", 400),
            (
                b"POST /api/v1/examples HTTP/1.1\r\n" + close + b"Content-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
                400,
            ),
            (b"GET /api/v1/config HTTP/1.1\r\n" + close + b"X: " + b"a" * 300_000 + b"\r\n\r\n", 431),
        ):
            answer = raw_http(port, request, timeout=10)
            assert answer.startswith(b"HTTP/1.") and status_of(answer) in (status, 400), answer[:200]
            assert b"Traceback" not in answer and b'File "' not in answer
        assert requests.get(url + "/api/v1/health", timeout=10).status_code == 200


def test_oversized_bodies_are_413(vis):
    client = create_app(vis).test_client()
    r = client.post("/api/v1/examples", data=b" " * (MAX_BODY_BYTES + 1), content_type="application/json")
    assert r.status_code == 413 and "too large" in r.get_json()["error"]


# ------------------------------------------------------------------ static files

TRAVERSALS = [
    "/static/../server.py",
    "/static/..%2fserver.py",
    "/static/%2e%2e/server.py",
    "/static/%2e%2e%2fserver.py",
    "/static/..%5cserver.py",
    "/static/....//server.py",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/../../../../../../etc/passwd",
    "/static/..%252fserver.py",
    "/static/%c0%ae%c0%ae/server.py",
    "/static/app.js%00.png",
    "/static/./../__init__.py",
    "/static/~/.bashrc",
    "/static/.",
    "/static/",
    "/../insights_app/server.py",
    "/static/..\\server.py",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_static_routes_cannot_escape_the_static_folder(vis, path):
    with serving(vis) as url:
        port = int(url.rsplit(":", 1)[1])
        answer = raw_http(port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        status = status_of(answer)
        if status == 308:  # Werkzeug merges double slashes by redirecting: still inside /static/
            location = answer.split(b"\r\nLocation: ", 1)[1].split(b"\r\n", 1)[0].decode()
            assert location.split("127.0.0.1", 1)[1].startswith("/static/"), location
            followed = requests.get(url + location.split("127.0.0.1", 1)[1], timeout=10)
            status, answer = followed.status_code, followed.content
        assert status in (400, 404), (path, answer[:300])
        for secret in (b"root:x:0:0", b"def create_app", b"import ", b"__version__"):
            assert secret not in answer, path


def test_static_files_inside_the_folder_are_served(vis):
    client = create_app(vis).test_client()
    for name in sorted(p.name for p in server_module.STATIC_DIR.iterdir() if p.is_file()):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and r.data == (server_module.STATIC_DIR / name).read_bytes()


# ------------------------------------------------------------------ the launcher's file paths


@pytest.fixture
def paths(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.pkl").write_bytes(b"not a pickle")
    return tmp_path


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--learner", "{tmp}/missing.pkl"], "--learner: no such file"),
        (["--learner", "{tmp}/folder"], "--learner: not a file"),
        (["--model", "m:f", "--data", "{tmp}/missing"], "--data: no such folder"),
        (["--model", "m:f", "--data", "{tmp}/file.pkl"], "--data: not a folder"),
        (["--model", "m:f", "--data", "{tmp}/folder", "--classes", "{tmp}/nope.txt"], "--classes: no such file"),
        (["--model", "m:f", "--data", "{tmp}/folder", "--classes", "{tmp}/folder"], "--classes: not a file"),
        (["--model", "m:f", "--data", "{tmp}/folder", "--labels", "{tmp}/none.csv"], "CSV file not found"),
        (["--model", "{tmp}/missing.pt", "--data", "{tmp}/folder"], "--model: no such file"),
        (["--model", "m:f", "--data", "{tmp}/" + "x" * 5000], "unusable path"),
        (["--learner", "{tmp}/file.pkl", "--data", "{tmp}/folder", "--port", "70000"], "--port"),
    ],
)
def test_launcher_validates_file_paths_with_one_line(paths, argv, message, capsys):
    import launch

    argv = [a.replace("{tmp}", str(paths)) for a in argv]
    status = launch.main(argv)
    err = capsys.readouterr().err.strip()
    assert status == 2 and message in err and "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("insights-app: error:")


def test_launcher_path_errors_from_a_real_process(paths):
    """The same through the console entry point as a user runs it (exit status, one line, no traceback)."""
    r = subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), "--learner", str(paths / "missing.pkl")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=paths,
    )
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"insights-app: error: --learner: no such file: {paths / 'missing.pkl'}"
    ]
