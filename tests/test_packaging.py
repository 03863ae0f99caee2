"""Packaging: each audience's lock holds what its code needs and nothing of the other audiences'.

pyproject.toml declares the project's dependencies by audience (base: the protocol; extras ``client``,
``service``, ``emulator``, ``stack``, ``dev``) and ``make lock`` compiles them into hashed locks in
``requirements/``. These tests read the locks offline, in seconds:

- each lock is exactly the transitive closure of its extras, walked over the installed distributions'
  metadata (``make test`` installed ``requirements/dev.txt``, which every narrower lock is constrained by,
  so the versions are the locked ones: checked first), so a stale or hand-edited lock fails;
- the client's lock holds no moto, troposphere, gunicorn, argon2 or AWS SDK; the service's (the one
  ``make release`` ships, checked in the Makefile's own recipe) no moto, cfn-lint or troposphere;
- a fresh virtualenv holding only the client's locked distributions plus this project's wheel runs the
  ``filesync`` console script from a shell with nothing else on its PATH, and imports every client module;
  one holding only the service's lock imports every production module.

What they do not prove: that the registry serves those files (the fresh installs are assembled from the
distributions already installed here, the same files the hashes name, rather than downloaded again).
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "requirements"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

#: Never in the client's install: the emulator, the stack generator, the service's server and password hashing,
#: the AWS SDK (the client signs its own S3 requests).
NOT_IN_CLIENT = {
    "moto",
    "troposphere",
    "awacs",
    "cfn-lint",
    "gunicorn",
    "argon2-cffi",
    "argon2-cffi-bindings",
    "aioboto3",
    "aiobotocore",
    "boto3",
    "botocore",
    "flask",
    "werkzeug",
}
#: Never on a production instance: the emulator and everything only it needs, the stack generator.
NOT_IN_RELEASE = {"moto", "cfn-lint", "troposphere", "awacs", "flask", "werkzeug", "docker", "responses"}
#: What moto[server] would add to the emulator (every other service's dependencies).
NOT_IN_EMULATOR = {"cfn-lint", "graphql-core", "aws-xray-sdk", "joserfc", "jsonpath-ng", "antlr4-python3-runtime"}
#: The client's budget of distributions (17 when written): a heavy dependency creeping in fails here.
CLIENT_BUDGET = 20

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def lock(name: str) -> dict[str, str]:
    """The pins of ``requirements/<name>.txt``: canonical name -> version, each with its hashes."""
    text = (LOCKS / f"{name}.txt").read_text()
    pins: dict[str, str] = {canonicalize_name(m[1]): m[2] for m in _PIN.finditer(text)}
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
    unhashed = [b.split("==")[0] for b in blocks if _PIN.match(b) and "--hash=sha256:" not in b]
    assert not unhashed, f"{name}.txt pins without hashes: {unhashed}"
    return pins


def requirements_of(*extras: str) -> list[Requirement]:
    reqs = [Requirement(r) for r in PYPROJECT["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in PYPROJECT["optional-dependencies"][extra]]
    return reqs


def closure(reqs: list[Requirement]) -> dict[str, str]:
    """Every distribution ``reqs`` need on this platform, transitively, from the installed metadata."""
    environment = {key: str(value) for key, value in default_environment().items()}
    found: dict[str, str] = {}
    wanted: dict[str, set[str]] = {}
    queue = list(reqs)
    while queue:
        req = queue.pop()
        name = canonicalize_name(req.name)
        extras = set(req.extras)
        if name in found and extras <= wanted[name]:
            continue
        wanted[name] = wanted.get(name, set()) | extras
        dist = importlib.metadata.distribution(name)
        found[name] = dist.version
        for line in dist.requires or []:
            sub = Requirement(line)
            if sub.marker is None or any(
                sub.marker.evaluate({**environment, "extra": extra}) for extra in ("", *wanted[name])
            ):
                queue.append(sub)
    return found


@pytest.mark.parametrize(
    ("name", "extras"),
    [
        ("client", ("client",)),
        ("service", ("service",)),
        ("embedded", ("service", "emulator")),
        ("stack", ("stack",)),
        ("dev", ("client", "service", "emulator", "stack", "dev")),
    ],
)
def test_each_lock_is_exactly_its_extras_closure(name, extras):
    pins = lock(name)
    installed = {n: importlib.metadata.distribution(n).version for n in lock("dev") if n not in ("setuptools",)}
    assert {n: v for n, v in lock("dev").items() if n in installed} == installed, "make test's venv is not the lock"
    assert {n: v for n, v in pins.items() if lock("dev").get(n) != v} == {}, "a narrower lock disagrees with dev's"
    for req in requirements_of(*extras):
        locked = pins.get(canonicalize_name(req.name))
        assert locked is not None, f"{req} is not locked: make lock"
        assert req.specifier.contains(locked), f"{req} is locked as {locked}: make lock"
    needed = closure(requirements_of(*extras))
    needed.pop("setuptools", None)  # pinned in dev's lock only (--allow-unsafe), for the editable install
    pins.pop("setuptools", None)
    assert set(pins) - set(needed) == set(), "locked but not needed: make lock"
    assert set(needed) - set(pins) == set(), "needed but not locked: make lock"


def test_the_client_installs_no_server_emulator_or_aws_sdk():
    pins = lock("client")
    assert set(pins) & NOT_IN_CLIENT == set()
    assert len(pins) <= CLIENT_BUDGET, sorted(pins)
    aiohttp = next(r for r in requirements_of("client") if r.name == "aiohttp")
    assert not aiohttp.extras  # no speedups/server extras


def test_the_release_ships_the_service_lock_alone():
    # The recipe as make would run it: one download, of the service's lock.
    recipe = subprocess.run(
        ["make", "-n", "release", "VENV=/nonexistent"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.replace("\\\n", " ")
    downloads = [line for line in recipe.splitlines() if " pip download " in line]
    assert len(downloads) == 1
    assert re.findall(r"-r (\S+)", downloads[0]) == ["requirements/service.txt"]
    pins = lock("service")
    assert set(pins) & NOT_IN_RELEASE == set()
    assert {"aiohttp", "aioboto3", "gunicorn", "argon2-cffi", "uvloop"} <= set(pins)
    # ... and the instances install that same lock from the wheelhouse.
    userdata = (ROOT / "cloudformation" / "userdata.py").read_text()
    assert "--no-index --find-links {APP_DIR}/wheels -r {APP_DIR}/requirements/service.txt" in userdata


def test_the_embedded_emulator_takes_only_the_moto_services_it_uses():
    pins = lock("embedded")
    assert "moto" in pins
    assert set(pins) & NOT_IN_EMULATOR == set()
    assert set(pins) & {"troposphere", "awacs"} == set()
    assert (ROOT / "requirements.txt").read_text().splitlines()[-1] == "-r requirements/embedded.txt"


def fresh_venv(tmp_path: Path, locked: str) -> Path:
    """A new virtualenv holding exactly the distributions of ``requirements/<locked>.txt``.

    Each is linked file by file from this environment's installation of the same locked version (its RECORD
    included), so the new environment has those distributions and nothing else, without a download.
    """
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    assert purelib.is_dir()
    for name in lock(locked):
        dist = importlib.metadata.distribution(name)
        for file in dist.files or []:
            if file.parts[0] == "..":  # scripts: not needed, and they name this environment's interpreter
                continue
            source = Path(str(dist.locate_file(file)))
            if source.is_file():
                target = purelib / file
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    target.symlink_to(source)
    return venv


def shell_env(tmp_path: Path, venv: Path) -> dict[str, str]:
    """A fresh shell's environment: nothing activated, no PYTHONPATH, the system's PATH after the venv's."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}


def test_filesync_runs_from_a_fresh_shell_with_only_the_client_installed(tmp_path):
    venv = fresh_venv(tmp_path, "client")
    # This project's wheel, built from a copy of the tree (setuptools writes build files beside the sources).
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    for package in ("service", "tools", "cloudformation"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run(
        [*pip, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index", "-w", wheels, source],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("filesync-*.whl")
    python = venv / "bin" / "python"
    subprocess.run([*pip, "--python", python, "install", "--quiet", "--no-deps", "--no-index", wheel], check=True)
    env = shell_env(tmp_path, venv)

    helped = subprocess.run(["filesync", "--help"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: filesync ")
    assert "exit codes" in helped.stdout.lower()

    # Every client module imports with only the client's distributions; nothing else of service is loaded.
    probe = """
import importlib, importlib.util, pkgutil, sys
import tools.sdk, tools.sync
for package in (tools.sdk, tools.sync):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
import pathspec, tqdm, watchfiles
print(" ".join(sorted(m for m in sys.modules if m.startswith("service."))))
print(" ".join(m for m in ("moto", "boto3", "botocore", "aioboto3", "troposphere", "gunicorn", "argon2")
               if importlib.util.find_spec(m) is not None))
"""
    ran = subprocess.run(["python", "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    loaded, present = ran.stdout.splitlines()
    assert set(loaded.split()) <= {
        "service.codec",
        "service.content",
        "service.core",
        "service.core.errors",
        "service.fanout",
        "service.paths",
        "service.resources",
        "service.wire",
    }
    assert present == ""
    checked = subprocess.run([*pip, "--python", python, "check"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout


def test_production_imports_with_only_the_service_lock(tmp_path):
    venv = fresh_venv(tmp_path, "service")
    env = {**shell_env(tmp_path, venv), "PYTHONPATH": str(ROOT)}  # the release's tree, as the instances run it
    probe = """
import importlib, importlib.util, pkgutil
import service
for module in pkgutil.walk_packages(service.__path__, "service."):
    if module.name != "service.__main__":
        importlib.import_module(module.name)
import aiohttp.worker, gunicorn.app.wsgiapp, uvloop
print(" ".join(m for m in ("moto", "troposphere", "awacs", "cfnlint", "flask", "werkzeug")
               if importlib.util.find_spec(m) is not None))
"""
    ran = subprocess.run(["python", "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == ""
