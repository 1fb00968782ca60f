"""The deploy profile as far as it can be tried without Docker: the nginx configuration both ways it
is rendered (`ops.runner.nginx_config` for `make run-cluster`; deploy/nginx-entrypoint.sh and the
nginx image's envsubst for docker-compose.yml), checked by `nginx -t` where nginx is installed; the
local certificate; and the image, compose and Helm files read for the properties they promise."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import ssl
import stat
import string
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from bot.settings import PROJECT_ROOT, Settings
from ops import runner

DEPLOY = PROJECT_ROOT / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
NGINX = shutil.which("nginx")
ADVISORS = "10.20.0.0/16, 190.12.34.56"
BALANCER = "10.0.0.5"


def _cluster_settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env(
        {"SOM_VAR_DIR": str(tmp_path), "RASA_PORT": "5005", "ADVISOR_ALLOWED_NETWORKS": ADVISORS,
         "NGINX_REAL_IP_FROM": BALANCER, **env}
    )  # fmt: skip


def _config(settings: Settings, ports: list[int]) -> str:
    """The local cluster's nginx.conf without its comments (they name the directives too)."""
    return re.sub(r"(?m)^\s*#.*\n", "", runner.nginx_config(settings, ports))


def _location(config: str, name: str) -> str:
    start = config.index(f"location {name} {{")
    return config[start : config.index("}", start)]


def _nginx_test(config: str, tmp_path: Path) -> None:
    if NGINX is None:
        pytest.skip("nginx is not installed: the configuration was checked as text only")
    path = tmp_path / "nginx-test.conf"
    path.write_text(config)
    result = subprocess.run([NGINX, "-t", "-c", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- the local cluster -------------------------------------------------------------------


def test_local_cluster_serves_https_with_hsts_and_redirects_plain_http(tmp_path):
    config = _config(_cluster_settings(tmp_path), [5006, 5007])
    assert "${" not in config  # every placeholder filled in
    assert "listen 127.0.0.1:5005 ssl;" in config
    assert 'add_header Strict-Transport-Security "max-age=31536000" always;' in config
    assert "error_page 497 =301 https://$host:$server_port$request_uri;" in config
    assert "server 127.0.0.1:5006; server 127.0.0.1:5007;" in config
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in config and "server_tokens off;" in config
    assert config.count("{") == config.count("}")


def test_local_certificate_is_made_once_with_a_private_key(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    settings = _cluster_settings(tmp_path)
    certificate, key = runner.tls_files(settings)
    config = runner.nginx_config(settings, [5006])
    assert f'ssl_certificate "{certificate}";' in config and f'ssl_certificate_key "{key}";' in config
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    first = (certificate.read_bytes(), key.read_bytes())
    assert runner.tls_files(settings) == (certificate, key)
    assert (certificate.read_bytes(), key.read_bytes()) == first  # not made again
    text = subprocess.run(
        ["openssl", "x509", "-in", str(certificate), "-noout", "-text"], capture_output=True, text=True, check=True
    ).stdout
    assert "DNS:localhost" in text and "IP Address:127.0.0.1" in text
    assert not [p for p in certificate.parent.iterdir() if p.is_dir()]  # no work directory left behind


def test_a_certificate_of_ones_own_replaces_the_self_signed_one(tmp_path):
    own = _cluster_settings(tmp_path, TLS_CERTIFICATE="/etc/ssl/som.pem", TLS_CERTIFICATE_KEY="/etc/ssl/som.key")
    assert runner.tls_files(own) == (Path("/etc/ssl/som.pem"), Path("/etc/ssl/som.key"))
    assert not (tmp_path / "nginx" / "tls").exists()
    with pytest.raises(runner.StartupError, match="TLS_CERTIFICATE_KEY"):
        runner.tls_files(_cluster_settings(tmp_path, TLS_CERTIFICATE="/etc/ssl/som.pem"))


def test_advisor_console_allowlist_and_the_stricter_login_limit(tmp_path):
    config = _config(_cluster_settings(tmp_path), [5006])
    allow = "allow 10.20.0.0/16; allow 190.12.34.56; deny all;"
    console, login = _location(config, "/advisor"), _location(config, "= /advisor/api/login")
    assert allow in console and allow in login
    assert "zone=som_login" in login and "zone=som_web" in console
    assert "deny all" not in _location(config, "/webhooks/")  # the public doors stay public
    zones = dict(re.findall(r"limit_req_zone \$binary_remote_addr zone=(\w+):10m rate=([\w/]+);", config))
    assert zones == {"som_web": "10r/s", "som_providers": "50r/s", "som_login": "6r/m"}
    for door in ("/webhooks/", "/webhooks/whatsapp/", "/webhooks/telegram/", "/socket.io/", "/webchat"):
        assert "limit_req zone=" in _location(config, door), door
    assert "limit_req_status 429;" in config and "client_max_body_size 1m;" in config


def test_without_an_allowlist_the_console_is_open_to_anyone(tmp_path):
    config = _config(_cluster_settings(tmp_path, ADVISOR_ALLOWED_NETWORKS=""), [5006])
    assert "deny all" not in config and "allow " not in config


def test_the_client_address_is_nginx_s_and_real_ip_trusts_only_the_configured_proxies(tmp_path):
    config = _config(_cluster_settings(tmp_path), [5006])
    assert "set_real_ip_from 10.0.0.5; real_ip_header X-Forwarded-For; real_ip_recursive on;" in config
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in config  # overwritten, never appended
    assert "proxy_set_header X-Real-IP $remote_addr;" in config
    assert "$proxy_add_x_forwarded_for" not in config
    untrusting = _config(_cluster_settings(tmp_path, NGINX_REAL_IP_FROM=""), [5006])
    assert "set_real_ip_from" not in untrusting and "real_ip_header" not in untrusting


def test_only_the_public_doors_are_proxied(tmp_path):
    config = _config(_cluster_settings(tmp_path), [5006])
    assert "return 404;" in _location(config, "/")
    proxied = re.findall(r"location ([^{]+?) \{[^}]*proxy_pass", config)
    assert sorted(proxied) == sorted(
        ["/webhooks/whatsapp/", "/webhooks/telegram/", "/webhooks/", "/socket.io/", "/webchat", "/advisor",
         "= /advisor/api/login", "= /"]
    )  # fmt: skip


@pytest.mark.parametrize("bad", ["10.0.0.0/8; allow all", "all", "10.0.0.0/8 }", "example.org"])
def test_a_network_list_cannot_smuggle_directives(tmp_path, bad):
    with pytest.raises(runner.StartupError, match="ADVISOR_ALLOWED_NETWORKS"):
        runner.nginx_config(_cluster_settings(tmp_path, ADVISOR_ALLOWED_NETWORKS=bad), [5006])
    result = _entrypoint({"ADVISOR_ALLOWED_NETWORKS": bad}, "true")
    assert result.returncode != 0 and "ADVISOR_ALLOWED_NETWORKS" in result.stderr


def test_local_cluster_config_passes_nginx_t(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    _nginx_test(runner.nginx_config(_cluster_settings(tmp_path), [5006, 5007]), tmp_path)


# --- the proxy container -----------------------------------------------------------------


def _entrypoint(env: dict[str, str], *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", str(DEPLOY / "nginx-entrypoint.sh"), *command],
        env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True,
    )  # fmt: skip


def _compose_proxy_env(**values: str) -> dict[str, str]:
    """The proxy's environment as docker compose would give it, with `values` for the host's variables."""

    def interpolate(text: str) -> str:
        return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: values.get(m[1], m[2] or ""), str(text))

    return {name: interpolate(value) for name, value in COMPOSE["services"]["proxy"]["environment"].items()}


def _rendered_in_the_container(env: dict[str, str]) -> str:
    """deploy/nginx-entrypoint.sh, then envsubst over every defined variable, as the nginx image does
    (/docker-entrypoint.d/20-envsubst-on-templates.sh)."""
    if shutil.which("envsubst") is None:
        pytest.skip("envsubst (gettext-base) is not installed")
    script = 'defined_envs=$(printf "\\${%s} " $(env | cut -d= -f1)); envsubst "$defined_envs" < "$0"'
    result = _entrypoint(env, "sh", "-c", script, str(DEPLOY / "nginx-som.conf.template"))
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_container_renders_what_the_local_cluster_renders(tmp_path):
    env = _compose_proxy_env(ADVISOR_ALLOWED_NETWORKS=ADVISORS, NGINX_REAL_IP_FROM=BALANCER)
    container = _rendered_in_the_container(env)
    assert "${" not in container
    assert "listen 443 ssl;" in container and "listen 80;" in container  # port 80 only redirects
    assert "if ($scheme = http) {\n        return 301 https://$host$request_uri;" in container
    settings = Settings.from_env({"ADVISOR_ALLOWED_NETWORKS": ADVISORS, "NGINX_REAL_IP_FROM": BALANCER})
    local = string.Template((DEPLOY / "nginx-som.conf.template").read_text()).safe_substitute(
        {**{k: v for k, v in env.items() if k not in ("ADVISOR_ALLOWED_NETWORKS", "NGINX_REAL_IP_FROM")},
         **runner.nginx_access(settings)}
    )  # fmt: skip
    assert container == local


def test_the_container_config_passes_nginx_t(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    certificate, key = runner.tls_files(Settings.from_env({"SOM_VAR_DIR": str(tmp_path)}))
    env = _compose_proxy_env(ADVISOR_ALLOWED_NETWORKS=ADVISORS, NGINX_REAL_IP_FROM=BALANCER)
    env.update(TLS_CERTIFICATE=str(certificate), TLS_CERTIFICATE_KEY=str(key), LISTEN="127.0.0.1:8443",
               REDIRECT_LISTEN="listen 127.0.0.1:8080;", UPSTREAMS="server 127.0.0.1:5006;")  # fmt: skip
    body = _rendered_in_the_container(env)
    temp = "".join(
        f"{kind}_temp_path {tmp_path}/{kind}; " for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\naccess_log off; {temp}\n{body}\n}}\n"
    _nginx_test(main, tmp_path)  # the image's nginx.conf includes conf.d/*.conf in its http block


def test_compose_requires_the_secrets_and_gives_redis_a_password():
    assistant = COMPOSE["x-assistant"]["environment"]
    assert "${ACTION_TOKEN:?" in assistant["ACTION_TOKEN"]
    assert assistant["REDIS_URL"].startswith("redis://:${REDIS_PASSWORD:?")
    actions = COMPOSE["services"]["actions"]["environment"]
    assert actions["ACTION_HOST"] == "0.0.0.0" and actions["ACTION_TOKEN"] == assistant["ACTION_TOKEN"]
    assert "ports" not in COMPOSE["services"]["actions"]  # reachable from the other containers only
    proxy = COMPOSE["services"]["proxy"]
    assert assistant["TRUSTED_PROXIES"] == proxy["networks"]["default"]["ipv4_address"]


def test_redis_gets_its_password_on_standard_input_not_its_command_line(tmp_path):
    """The compose command run with `cat` standing in for redis-server: what redis-server would read."""
    redis = COMPOSE["services"]["redis"]
    assert "${REDIS_PASSWORD:?" in redis["environment"]["REDIS_PASSWORD"]
    shell, flag, script = redis["command"]
    script = script.replace("$$", "$")  # compose's escape for a literal $
    assert script.startswith("exec redis-server - <<EOF") and "REDIS_PASSWORD" not in script.split("\n")[0]
    stand_in = script.replace("exec redis-server -", "exec cat", 1)
    config = subprocess.run(
        [shell, flag, stand_in], env={"PATH": os.environ["PATH"], "REDIS_PASSWORD": "pw0123456789abcdef"},
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert config.splitlines() == ["requirepass pw0123456789abcdef", 'save ""', "appendonly no"]


# --- the image ---------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_the_image_runs_as_a_user_other_than_root():
    instructions = _dockerfile_instructions()
    final_stage = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    users = [arg for op, arg in final_stage if op == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    ops_after_user = [op for op, _ in final_stage[[a for _, a in final_stage].index(users[-1]) :]]
    assert "CMD" in ops_after_user  # the servers start as that user


def test_the_image_bakes_no_secret():
    for op, arg in _dockerfile_instructions():
        if op in ("ENV", "ARG"):
            assert not re.search(r"TOKEN|PASSWORD|SECRET|KEY|DATABASE_URL|REDIS_URL", arg, re.I), arg


def test_dockerignore_keeps_tests_git_and_secrets_out():
    patterns = {line.strip() for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()}
    for needed in ("tests", ".git", "var", ".env", "deploy/tls", "**/*.key", "**/*.pem", ".venv", "models"):
        assert needed in patterns, needed


def test_helm_starts_our_entry_point_with_secrets_from_the_secret_store():
    values = yaml.safe_load((DEPLOY / "helm-values.yml").read_text())
    assert "--auth-token" not in values["command"] + values["args"]
    actions = values["rasa-action-server"]
    env = {item["name"]: item for item in values["extraEnv"] + actions["extraEnv"]}
    assert "secretKeyRef" in env["ACTION_TOKEN"]["valueFrom"]
    assert {item["name"]: item.get("value") for item in actions["extraEnv"]}["ACTION_HOST"] == "0.0.0.0"
    assert values["redis"]["auth"]["enabled"] is True
    for pod in (values, actions):
        assert pod["podSecurityContext"]["runAsNonRoot"] is True
    assert not [
        item
        for item in values["extraEnv"] + actions["extraEnv"]
        if re.search(r"TOKEN|PASSWORD|SECRET|_URL$", item["name"])
        and "value" in item
        and item["name"] not in ("ACTION_URL",)
    ]


# --- the local cluster's nginx, running ------------------------------------------------------


class _Echo(BaseHTTPRequestHandler):
    """A stand-in for the Rasa replicas: answers what it was asked and with which headers."""

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    """nginx as `make run-cluster` configures it, in front of the stand-in; advisors only from
    127.0.0.2, and X-Forwarded-For believed only from 127.0.0.1."""
    if NGINX is None or shutil.which("openssl") is None:
        pytest.skip("nginx or openssl is not installed")
    var = tmp_path_factory.mktemp("proxy")
    backend = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    settings = Settings.from_env(
        {"SOM_VAR_DIR": str(var), "RASA_PORT": str(runner.free_port()), "ADVISOR_ALLOWED_NETWORKS": "127.0.0.2",
         "NGINX_REAL_IP_FROM": "127.0.0.1"}
    )  # fmt: skip
    config = var / "nginx" / "nginx.conf"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(runner.nginx_config(settings, [backend.server_address[1]]))
    nginx = subprocess.Popen([NGINX, "-c", str(config), "-g", "daemon off;"], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not runner.port_in_use(settings.rasa_port):
            assert nginx.poll() is None and time.monotonic() < deadline, nginx.stderr.read().decode()
            time.sleep(0.1)
        yield settings.rasa_port, ssl.create_default_context(cafile=str(runner.tls_files(settings)[0]))
    finally:
        nginx.terminate()
        nginx.wait(10)
        backend.shutdown()


def _request(proxy, method: str, path: str, source: str = "127.0.0.1", tls: bool = True, headers=None):
    """One request to the proxy from `source` (127.0.0.2 is this machine too, seen as another client)."""
    port, context = proxy
    connection = (
        http.client.HTTPSConnection("127.0.0.1", port, context=context, source_address=(source, 0), timeout=10)
        if tls
        else http.client.HTTPConnection("127.0.0.1", port, source_address=(source, 0), timeout=10)
    )
    try:
        connection.request(method, path, body=b"{}" if method == "POST" else None, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
        return response.status, dict(response.getheaders()), body
    finally:
        connection.close()


def test_proxy_speaks_https_with_hsts_and_redirects_plain_http(proxy):
    status, headers, body = _request(proxy, "GET", "/webchat/")
    assert status == 200 and json.loads(body)["headers"]["x-forwarded-proto"] == "https"
    assert headers["Strict-Transport-Security"] == "max-age=31536000"
    status, headers, _ = _request(proxy, "GET", "/webchat/?x=1", tls=False)
    assert status == 301 and headers["Location"] == f"https://127.0.0.1:{proxy[0]}/webchat/?x=1"


def test_proxy_opens_the_advisor_console_only_to_the_allowed_networks(proxy):
    assert _request(proxy, "GET", "/advisor/")[0] == 403
    assert _request(proxy, "POST", "/advisor/api/login")[0] == 403
    assert _request(proxy, "GET", "/advisor/", source="127.0.0.2")[0] == 200
    assert _request(proxy, "POST", "/webhooks/rest/webhook")[0] == 200  # the public doors stay open


def test_proxy_limits_sign_in_attempts_harder_than_the_rest(proxy):
    statuses = [_request(proxy, "POST", "/advisor/api/login", source="127.0.0.2")[0] for _ in range(8)]
    assert statuses[0] == 200 and statuses[-1] == 429
    assert [_request(proxy, "POST", "/webhooks/rest/webhook", source="127.0.0.2")[0] for _ in range(8)] == [200] * 8


def test_proxy_hides_everything_but_the_public_doors(proxy):
    for path in ("/status", "/model/parse", "/conversations/x/tracker", "/version"):
        assert _request(proxy, "GET", path)[0] == 404, path


def test_proxy_passes_the_real_client_address_and_believes_only_the_trusted_proxies(proxy):
    def seen(source: str, forwarded: str) -> dict:
        _, _, body = _request(proxy, "GET", "/webchat/", source=source, headers={"X-Forwarded-For": forwarded})
        return json.loads(body)["headers"]

    untrusted = seen("127.0.0.2", "203.0.113.7")  # a client writing its own X-Forwarded-For
    assert (untrusted["x-forwarded-for"], untrusted["x-real-ip"]) == ("127.0.0.2", "127.0.0.2")
    trusted = seen("127.0.0.1", "203.0.113.7")  # the balancer in NGINX_REAL_IP_FROM
    assert (trusted["x-forwarded-for"], trusted["x-real-ip"]) == ("203.0.113.7", "203.0.113.7")
