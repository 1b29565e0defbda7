"""How a program of each benchmark language is built and run in the sandbox, and whether this machine can.

Python runs in a fork of the sandbox's own interpreter. The others need their toolchain on the machine
(node, rustc, go, dart, tsc); a language whose toolchain is missing is skipped, with the reason, never failed.
Commands follow MultiPL-E's evaluation scripts so that scores compare with published ones.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field

from codelupe_pipeline.evaluate.sandbox import Program, SandboxLimits

# Where a completion ends when the task gives no stop sequences of its own (HumanEval's and MultiPL-E's).
DEFAULT_STOPS: dict[str, tuple[str, ...]] = {
    "python": ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert ", '\n"""'),
    "javascript": ("\nfunction ", "\n/*", "\n//", "\nconsole.log"),
    "typescript": ("\nfunction ", "\n/*", "\n//", "\nconsole.log"),
    "rust": ("\n}",),
    "go": ("\nfunc ", "struct", "\n// "),
    "dart": ("\n}",),
}
# MultiPL-E's language codes and common spellings.
ALIASES = {
    "py": "python", "python3": "python", "js": "javascript", "ts": "typescript", "rs": "rust",
    "go_test.go": "go", "golang": "go",
}  # fmt: skip
# Compilers need more than a test program: time, memory, threads (rustc and its linker).
BUILD_LIMITS = SandboxLimits(cpu_seconds=30.0, memory_bytes=4 << 30, max_processes=64, max_file_bytes=256 << 20)


def canonical_language(name: str) -> str:
    key = name.strip().lower()
    return ALIASES.get(key, key)


@dataclass(frozen=True)
class Toolchain:
    """A language that can run here: how its programs become sandbox `Program`s."""

    language: str
    source_file: str = "main.py"
    build: tuple[str, ...] = ()
    run: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    readable_paths: tuple[str, ...] = ()  # install directories the sandbox must keep visible
    compiles_when_run: bool = False  # `go test` builds and runs in one command: it gets the build limits
    version: str = ""

    def program(self, source: str, limits: SandboxLimits) -> tuple[Program, SandboxLimits]:
        """The sandbox program for `source`, and the limits to run it under."""
        if self.language == "python":
            return Program(python=source), limits
        program = Program(
            files={self.source_file: source},
            build=self.build,
            run=self.run,
            env=self.env,
            build_limits=BUILD_LIMITS if self.build else None,
        )
        if self.compiles_when_run:
            limits = SandboxLimits(
                cpu_seconds=max(limits.cpu_seconds, BUILD_LIMITS.cpu_seconds),
                memory_bytes=max(limits.memory_bytes, BUILD_LIMITS.memory_bytes),
                max_processes=BUILD_LIMITS.max_processes,
                max_file_bytes=BUILD_LIMITS.max_file_bytes,
                wall_seconds=limits.wall_seconds,
            )
        return program, limits


class ToolchainMissing(RuntimeError):
    """A benchmark language whose toolchain this machine lacks: the benchmark is skipped with this reason."""


def _output(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _install_root(executable: str) -> str:
    """The directory an executable's installation lives in (…/bin/tool -> …)."""
    return os.path.dirname(os.path.dirname(os.path.realpath(executable)))


def _need(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolchainMissing(f"`{name}` is not on PATH ({hint})")
    return path


def _node() -> tuple[str, str]:
    node = _need("node", "install Node.js")
    version = _output([node, "--version"])
    return node, version


def _javascript() -> Toolchain:
    node, version = _node()
    return Toolchain(
        "javascript", "main.js", run=(node, "main.js"), readable_paths=(_install_root(node),), version=version
    )


def _typescript() -> Toolchain:
    node, version = _node()
    tsc = shutil.which("tsc")
    if tsc is not None:  # MultiPL-E: compile with tsc, run with node; type errors fail the program
        tsc_version = _output([tsc, "--version"])
        return Toolchain(
            "typescript",
            "main.ts",
            build=(os.path.realpath(tsc), "--target", "es2020", "--module", "commonjs", "--lib", "es2020", "main.ts"),
            run=(node, "main.js"),
            readable_paths=(_install_root(node), _install_root(tsc)),
            version=f"{tsc_version}, node {version}",
        )
    match = re.match(r"v(\d+)\.(\d+)", version)
    if match and (int(match[1]), int(match[2])) >= (22, 6):  # node strips the types itself (no type check)
        return Toolchain(
            "typescript",
            "main.ts",
            run=(node, "--experimental-strip-types", "--no-warnings", "main.ts"),
            readable_paths=(_install_root(node),),
            version=f"node {version} (type stripping)",
        )
    raise ToolchainMissing(f"needs `tsc` (npm install -g typescript) or Node.js >= 22.6 (found {version})")


def _rust() -> Toolchain:
    rustc = _need("rustc", "install Rust with rustup")
    _need("cc", "rustc links with the C compiler: apt-get install gcc")
    # The real compiler, not rustup's proxy (which needs ~/.rustup settings the sandbox hides).
    sysroot = _output([rustc, "--print", "sysroot"])
    if sysroot and os.path.exists(os.path.join(sysroot, "bin", "rustc")):
        rustc = os.path.join(sysroot, "bin", "rustc")
    version = _output([rustc, "--version"])
    return Toolchain(
        "rust",
        "main.rs",
        build=(rustc, "--edition", "2021", "-C", "codegen-units=1", "-o", "main", "main.rs"),
        run=("./main",),
        readable_paths=tuple(p for p in (sysroot or _install_root(rustc),) if p),
        version=version,
    )


def _go() -> Toolchain:
    go = os.path.realpath(_need("go", "install Go"))
    goroot = _output([go, "env", "GOROOT"]) or _install_root(go)
    # MultiPL-E's Go tasks are test files: `go test` builds and runs them (GOCACHE defaults under $HOME,
    # which the sandbox points at the program's own directory).
    return Toolchain(
        "go",
        "main_test.go",
        run=(go, "test", "main_test.go"),
        env={"GOTOOLCHAIN": "local", "GOFLAGS": "-count=1", "CGO_ENABLED": "0", "GO111MODULE": "auto"},
        readable_paths=(goroot,),
        compiles_when_run=True,
        version=_output([go, "version"]),
    )


def _dart() -> Toolchain:
    dart = os.path.realpath(_need("dart", "install the Dart SDK"))
    return Toolchain(
        "dart",
        "main.dart",
        run=(dart, "main.dart"),
        readable_paths=(_install_root(dart),),
        compiles_when_run=True,  # the Dart VM compiles as it loads, and reserves address space for it
        version=_output([dart, "--version"]),
    )


_FINDERS = {"javascript": _javascript, "typescript": _typescript, "rust": _rust, "go": _go, "dart": _dart}
SUPPORTED_LANGUAGES = ("python", *_FINDERS)


@functools.cache
def toolchain(language: str) -> Toolchain:
    """The toolchain for `language` on this machine; ToolchainMissing (with the reason) when it has none."""
    language = canonical_language(language)
    if language == "python":
        return Toolchain("python")
    finder = _FINDERS.get(language)
    if finder is None:
        raise ToolchainMissing(f"no runner for language {language!r} (supported: {', '.join(SUPPORTED_LANGUAGES)})")
    return finder()
