"""Package the provider for Amazon MWAA: ``plugins.zip``, ``requirements.txt``, the DAGs, IAM policies.

How MWAA installs packages: every Airflow container starts from an image that already holds
Airflow, the Amazon provider and their dependencies, installed under Airflow's constraints for
that version; it then runs ``pip install -r requirements.txt`` (adding its own essential pins).
An environment often has no internet access, and a package on no index (this one) can only come
from ``plugins.zip``, which MWAA unpacks at ``/usr/local/airflow/plugins``. So the build:

1. builds this project's wheel;
2. splits the wheel's requirements into those the image already satisfies (checked against the
   image's installed versions, ``deploy/mwaa/images/``) and the rest;
3. resolves the rest with pip for MWAA's Python and platform under the image's exact versions and
   MWAA's copy of Airflow's constraints (``deploy/mwaa/constraints/``), so nothing the image
   holds is upgraded or downgraded: a conflict fails the build, naming the package;
4. writes ``plugins.zip`` (the wheel and every resolved wheel the image lacks, plus the UI plugins
   of ``plugins/``), ``requirements.txt`` (``--no-index --find-links /usr/local/airflow/plugins``
   and MWAA's ``--constraint`` line), the ``dags/`` folder, and the IAM policies rendered from
   ``deploy/iam/``. No ``startup.sh``: nothing needs setting before Airflow starts.

The image lists come from resolving each image's own package list (``deploy/mwaa/releases.json``,
copied from the image's bootstrap script) under its constraints: ``python -m
airflow_sm_provider.mwaa lock-image --airflow-version X`` rewrites one. Pure functions (pins,
conflicts, the requirements file, policy rendering) come first; pip and file I/O at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import string
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

PROJECT_DIR = Path(__file__).resolve().parents[1]
PLUGINS_PATH = "/usr/local/airflow/plugins"
# Amazon Linux 2023 on x86_64 (glibc 2.34): the wheels MWAA's containers can install.
PLATFORMS = ("manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux2014_x86_64")
CONSTRAINTS_URL = (
    "https://raw.githubusercontent.com/apache/airflow/constraints-{airflow}/constraints-{python}.txt"
)
# Placeholders of the IAM templates and the rule each value must follow.
POLICY_VALUES = {
    "Partition": re.compile(r"aws(-cn|-us-gov)?"),
    "Region": re.compile(r"[a-z]{2}(-[a-z]+)+-\d"),
    "AccountId": re.compile(r"\d{12}"),
    "Bucket": re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"),
    "Prefix": re.compile(r"[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*"),
    "SagemakerRoleName": re.compile(r"[\w+=,.@-]{1,64}"),
}


class MwaaBuildError(Exception):
    """Raised when a package for MWAA cannot be built: bad input, or requirements MWAA's pins exclude."""


@dataclass(frozen=True)
class MwaaRelease:
    """One MWAA Airflow version: its Python, its image's package list and the files vendored for it."""

    airflow: str
    python: str
    image_packages: tuple[str, ...]
    deploy_dir: Path

    @property
    def constraints_file(self) -> Path:
        return self.deploy_dir / "mwaa" / "constraints" / f"airflow-{self.airflow}.txt"

    @property
    def image_file(self) -> Path:
        return self.deploy_dir / "mwaa" / "images" / f"airflow-{self.airflow}.txt"

    @property
    def constraints_url(self) -> str:
        return CONSTRAINTS_URL.format(airflow=self.airflow, python=self.python)


def load_release(airflow_version: str, deploy_dir: Path = PROJECT_DIR / "deploy") -> MwaaRelease:
    """The release table entry for ``airflow_version``; an unknown version names the known ones."""
    table = json.loads((deploy_dir / "mwaa" / "releases.json").read_text())["releases"]
    if airflow_version not in table:
        raise MwaaBuildError(
            f"--airflow-version: {airflow_version!r} is not an MWAA release known here "
            f"(one of {', '.join(sorted(table))}; see deploy/mwaa/README.md to add one)"
        )
    entry = table[airflow_version]
    return MwaaRelease(airflow_version, entry["python"], tuple(entry["image_packages"]), deploy_dir)


# --- pure: pins, requirements, conflicts ------------------------------------------------------


def parse_pins(text: str) -> dict[str, str]:
    """``name==version`` lines of a constraints or lock file, by canonical name (comments skipped)."""
    pins: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name, sep, version = line.partition("==")
        if not sep:
            raise MwaaBuildError(f"pin {line!r}: expected 'name==version'")
        pins[canonicalize_name(name.split("[")[0].strip())] = version.split(";")[0].strip()
    return pins


def format_pins(pins: Mapping[str, str]) -> str:
    """Pins as a constraints file, sorted by name."""
    return "".join(f"{name}=={pins[name]}\n" for name in sorted(pins))


def wheel_requirements(metadata: str, python: str) -> list[Requirement]:
    """The unconditional ``Requires-Dist`` of a wheel's METADATA for ``python`` (extras left out)."""
    environment = {"python_version": python, "python_full_version": f"{python}.0", "extra": ""}
    requirements = []
    for value in Parser().parsestr(metadata).get_all("Requires-Dist") or []:
        try:
            requirement = Requirement(value)
        except InvalidRequirement as error:
            raise MwaaBuildError(f"Requires-Dist {value!r}: {error}") from None
        if requirement.marker is None or requirement.marker.evaluate(environment):
            requirements.append(requirement)
    return requirements


def split_requirements(
    requirements: Iterable[Requirement],
    image: Mapping[str, str],
    airflow_version: str,
    image_packages: Iterable[str],
) -> tuple[list[Requirement], list[str]]:
    """Split into (requirements the image lacks, conflicts with what it holds).

    A requirement on a package the image holds is satisfied when the installed version is in its
    specifier and every extra it asks for was installed with the image (``image_packages``);
    otherwise it is a conflict, since MWAA never lets a user requirement replace those versions.
    """
    installed_extras: dict[str, set[str]] = {}
    for spec in image_packages:
        parsed = Requirement(spec)
        installed_extras.setdefault(canonicalize_name(parsed.name), set()).update(parsed.extras)
    missing: list[Requirement] = []
    conflicts: list[str] = []
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        version = airflow_version if name == "apache-airflow" else image.get(name)
        if version is None:
            missing.append(requirement)
        elif not requirement.specifier.contains(version, prereleases=True):
            conflicts.append(
                f"MWAA {airflow_version} has {name}=={version}; this package needs {requirement}"
            )
        elif not set(requirement.extras) <= installed_extras.get(name, set()):
            extras = sorted(set(requirement.extras) - installed_extras.get(name, set()))
            conflicts.append(f"MWAA {airflow_version} installs {name} without the extras {extras}")
    return missing, conflicts


def image_lacks(resolved: Mapping[str, str], image: Mapping[str, str]) -> dict[str, str]:
    """What a resolution adds to the image; a different version of an image package is an error."""
    changed = sorted(f"{n}=={v} (image has {image[n]})" for n, v in resolved.items() if image.get(n, v) != v)
    if changed:
        raise MwaaBuildError(f"the resolution would replace packages of the MWAA image: {', '.join(changed)}")
    return {name: version for name, version in resolved.items() if name not in image}


def requirements_txt(release: MwaaRelease, distribution: str, version: str) -> str:
    """MWAA's requirements.txt: its constraints line, then this package from plugins.zip only."""
    return (
        f"# airflow-sm mwaa build --airflow-version {release.airflow}: every package comes from plugins.zip\n"
        f'--constraint "{release.constraints_url}"\n'
        "--no-index\n"
        f"--find-links {PLUGINS_PATH}\n"
        f"{distribution}=={version}\n"
    )


def check_policy_values(values: Mapping[str, str]) -> None:
    """Refuse a value of an IAM placeholder that breaks its rule, naming the placeholder."""
    for name, value in values.items():
        rule = POLICY_VALUES.get(name)
        if rule is None:
            raise MwaaBuildError(f"{name}: not a policy placeholder (one of {', '.join(POLICY_VALUES)})")
        if not rule.fullmatch(value):
            raise MwaaBuildError(f"{name}: {value!r} does not match {rule.pattern}")


def render_policy(template: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    """An IAM policy template with its ``${Name}`` placeholders filled; each value checked first."""
    check_policy_values(values)

    def fill(node: Any) -> Any:
        if isinstance(node, str):
            try:
                return string.Template(node).substitute(values)
            except KeyError as error:
                raise MwaaBuildError(f"policy placeholder {error.args[0]} has no value") from None
        if isinstance(node, list):
            return [fill(item) for item in node]
        if isinstance(node, dict):
            return {fill(key): fill(item) for key, item in node.items()}
        return node

    return fill(template)


# --- I/O: pip, files --------------------------------------------------------------------------


def find_python(version: str | None) -> str:
    """An interpreter of ``version`` to run pip with (pip checks Requires-Python against the
    interpreter it runs on, whatever ``--python-version`` says): this one, ``pythonX.Y`` on PATH,
    or a pyenv version; None: this interpreter."""
    if version is None or version == f"{sys.version_info[0]}.{sys.version_info[1]}":
        return sys.executable
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [
        shutil.which(f"python{version}"),
        *sorted(map(str, pyenv.glob(f"{version}*/bin/python{version}"))),
    ]
    for candidate in filter(None, candidates):
        if (
            subprocess.run([candidate, "-m", "pip", "--version"], capture_output=True, check=False).returncode
            == 0
        ):
            return candidate
    raise MwaaBuildError(f"--python-version: no Python {version} with pip found (PATH, pyenv); install one")


def _pip(*args: str, cwd: Path, python: str | None = None) -> None:
    """Run pip on an interpreter of ``python``; pip's own output is the error message when it fails."""
    command = [find_python(python), "-m", "pip", "--disable-pip-version-check", *args]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise MwaaBuildError(f"pip {args[0]} failed:\n{done.stderr[-4000:] or done.stdout[-4000:]}")


def _target_options(python: str | None) -> list[str]:
    """pip options selecting MWAA's Python and platform wheels; None: this interpreter's own."""
    if python is None:
        return []
    return ["--python-version", python, "--only-binary=:all:", *(f"--platform={p}" for p in PLATFORMS)]


def resolve(
    requirements: Iterable[str], constraints: Iterable[Path], python: str | None, work: Path
) -> dict[str, str]:
    """Resolve with pip (dry run, nothing installed): every package and version, by canonical name."""
    report = work / "report.json"
    _pip(
        "install",
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        "--report",
        str(report),
        "--target",
        str(work / "target"),
        *_target_options(python),
        *(f"--constraint={path}" for path in constraints),
        *requirements,
        cwd=work,
        python=python,
    )
    installs = json.loads(report.read_text())["install"]
    return {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"] for item in installs}


def download(pins: Mapping[str, str], python: str | None, dest: Path) -> list[Path]:
    """Fetch the wheels of exactly these versions (no dependency resolution: they are resolved)."""
    if pins:
        _pip(
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(dest),
            *_target_options(python),
            *(f"{name}=={version}" for name, version in sorted(pins.items())),
            cwd=dest,
            python=python,
        )
    return sorted(dest.glob("*.whl"))


def build_wheel(project_dir: Path, dest: Path) -> Path:
    """This project's wheel, built by pip from its source tree."""
    _pip("wheel", "--no-deps", "--quiet", "--wheel-dir", str(dest), str(project_dir), cwd=dest)
    wheels = sorted(dest.glob("airflow_sm_provider-*.whl"))
    if len(wheels) != 1:
        raise MwaaBuildError(f"expected one airflow_sm_provider wheel in {dest}, found {len(wheels)}")
    return wheels[0]


def _wheel_metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return archive.read(name).decode()


def write_zip(path: Path, members: Mapping[str, Path]) -> None:
    """A reproducible zip: members sorted, fixed timestamps, so the same inputs give the same bytes.
    Wheels are zips already: they are stored, not compressed again."""
    with zipfile.ZipFile(path, "w") as archive:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_STORED if name.endswith(".whl") else zipfile.ZIP_DEFLATED
            archive.writestr(info, members[name].read_bytes())


def _tree_files(folder: Path, skip: Iterable[str] = ()) -> dict[str, Path]:
    """Files under ``folder`` by relative path, without caches and the names in ``skip``."""
    return {
        path.relative_to(folder).as_posix(): path
        for path in sorted(folder.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.name not in set(skip)
    }


@dataclass(frozen=True)
class BuildResult:
    """What a build wrote, and the figures worth printing."""

    out_dir: Path
    plugins_zip: Path
    requirements_txt: Path
    wheels: tuple[str, ...]
    seconds: float


def build(
    airflow_version: str,
    out_dir: Path,
    *,
    python: str | None = "",
    policy_values: Mapping[str, str] | None = None,
    project_dir: Path = PROJECT_DIR,
) -> BuildResult:
    """Write plugins.zip, requirements.txt, dags/ and (with ``policy_values``) the IAM policies.

    ``python`` is the target Python: "" means the release's (MWAA's platform wheels), None means
    this interpreter and its platform (to try the result in a local virtualenv).
    """
    started = time.monotonic()
    release = load_release(airflow_version, project_dir / "deploy")
    check_policy_values(policy_values or {})
    target = release.python if python == "" else python
    image = parse_pins(release.image_file.read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mwaa-build-") as tmp:
        work = Path(tmp)
        (work / "wheels").mkdir()
        wheel = build_wheel(project_dir, work / "wheels")
        missing, conflicts = split_requirements(
            wheel_requirements(
                _wheel_metadata(wheel), target or f"{sys.version_info[0]}.{sys.version_info[1]}"
            ),
            image,
            release.airflow,
            release.image_packages,
        )
        if conflicts:
            raise MwaaBuildError("; ".join(conflicts))
        image_pins = work / "image-pins.txt"
        image_pins.write_text(format_pins(image))
        resolved = resolve([str(r) for r in missing], [image_pins, release.constraints_file], target, work)
        extra = download(image_lacks(resolved, image), target, work / "wheels")
        members = {path.name: path for path in extra}
        members.update(_tree_files(project_dir / "plugins", skip=("README.md",)))
        write_zip(out_dir / "plugins.zip", members)
    requirements = out_dir / "requirements.txt"
    requirements.write_text(requirements_txt(release, "airflow-sm-provider", _version(wheel)))
    dags = out_dir / "dags"
    for name, path in _tree_files(project_dir / "dags").items():
        (dags / name).parent.mkdir(parents=True, exist_ok=True)
        (dags / name).write_bytes(path.read_bytes())
    if policy_values is not None:
        for template in sorted((project_dir / "deploy" / "iam").glob("*.json")):
            policy = render_policy(json.loads(template.read_text()), policy_values)
            (out_dir / template.name).write_text(json.dumps(policy, indent=2) + "\n")
    return BuildResult(
        out_dir, out_dir / "plugins.zip", requirements, tuple(sorted(members)), time.monotonic() - started
    )


def _version(wheel: Path) -> str:
    return wheel.name.split("-")[1]


def lock_image(airflow_version: str, project_dir: Path = PROJECT_DIR) -> Path:
    """Rewrite ``deploy/mwaa/images/airflow-X.txt``: the image's package list resolved under its pins."""
    release = load_release(airflow_version, project_dir / "deploy")
    # psycopg2 and pycurl are source-only leaves (no dependencies): they cannot change the rest.
    packages = [p for p in release.image_packages if canonicalize_name(p) not in {"psycopg2", "pycurl"}]
    with tempfile.TemporaryDirectory(prefix="mwaa-image-") as tmp:
        pins = resolve(packages, [release.constraints_file], release.python, Path(tmp))
    release.image_file.parent.mkdir(parents=True, exist_ok=True)
    release.image_file.write_text(
        f"# What the MWAA {release.airflow} image installs (Python {release.python}), resolved from its\n"
        "# package list (releases.json) under its constraints by:\n"
        f"#   python -m airflow_sm_provider.mwaa lock-image --airflow-version {release.airflow}\n"
        + format_pins(pins)
    )
    return release.image_file


# --- command line -----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``build`` and ``lock-image`` subcommands (shared by ``airflow-sm mwaa`` and ``-m``)."""
    commands = parser.add_subparsers(dest="mwaa_command", required=True)
    build_parser = commands.add_parser(
        "build", help="write plugins.zip, requirements.txt, dags/ and IAM policies"
    )
    build_parser.add_argument(
        "--airflow-version", required=True, help="the MWAA environment's Airflow version"
    )
    build_parser.add_argument("--out", type=Path, default=Path("dist/mwaa"), help="output folder (dist/mwaa)")
    build_parser.add_argument(
        "--python-version", default="", help="target Python (default: MWAA's); 'local' for this interpreter"
    )
    for name in POLICY_VALUES:
        build_parser.add_argument(f"--{_flag(name)}", dest=name, help="IAM policy value (all or none)")
    build_parser.set_defaults(mwaa_func=_run_build)
    lock = commands.add_parser("lock-image", help="rewrite the list of what an MWAA image installs")
    lock.add_argument("--airflow-version", required=True)
    lock.set_defaults(mwaa_func=lambda args: print(lock_image(args.airflow_version)) or 0)


def _flag(name: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "-", name).lower()


def _run_build(args: argparse.Namespace) -> int:
    values = {name: getattr(args, name) for name in POLICY_VALUES if getattr(args, name) is not None}
    if values and len(values) != len(POLICY_VALUES):
        absent = ", ".join(f"--{_flag(n)}" for n in POLICY_VALUES if n not in values)
        raise MwaaBuildError(f"IAM policy values: give all of them or none (missing {absent})")
    python = None if args.python_version == "local" else args.python_version
    result = build(args.airflow_version, args.out, python=python, policy_values=values or None)
    size = result.plugins_zip.stat().st_size
    print(
        f"wrote {result.out_dir}: plugins.zip ({size / 1e6:.1f} MB, {len(result.wheels)} files), "
        f"requirements.txt, dags/ in {result.seconds:.0f} s"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``mwaa`` command; a build error is one line on stderr and exit status 2."""
    try:
        return args.mwaa_func(args)
    except MwaaBuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_sm_provider.mwaa", description=__doc__.split("\n\n")[0]
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
