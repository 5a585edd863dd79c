"""pyproject.toml, uv.lock and environment.yml pin the same versions, and the README's commands are real."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pins(requirements):
    pins = {}
    for requirement in requirements:
        name, _, version = requirement.partition("==")
        assert version, f"{requirement!r} is not an exact pin (name==version)"
        pins[name.strip().lower()] = version.strip()
    return pins


def test_pyproject_lock_and_environment_agree():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = _pins(project["dependencies"])
    locked = {p["name"].lower(): p["version"] for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"]}
    for name, version in declared.items():
        assert locked.get(name) == version, f"uv.lock has {name}=={locked.get(name)}, pyproject.toml pins {version}"
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert _pins(pip_section) == declared, "environment.yml's pip pins differ from pyproject.toml"
    python_pin = next(d for d in environment["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert re.fullmatch(r"python=3\.1[12]", python_pin), f"{python_pin} outside requires-python"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^(make test|make pretrain[^\n]*)$", readme, flags=re.M)
    assert "make test" in commands and any(c.startswith("make pretrain") for c in commands)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
