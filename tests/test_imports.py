"""The import boundaries of DESIGN.md, checked in fresh interpreters (sys.modules cannot lie there)."""

import subprocess
import sys
import textwrap

import pytest

FORBIDDEN = {
    "gpt2_core": ("torch", "tensorflow", "keras", "gpt2_pt", "gpt2_tf"),
    "gpt2_pt": ("tensorflow", "keras", "gpt2_tf"),
    "gpt2_tf": ("torch", "gpt2_pt"),
    "gpt2_convert": ("torch", "tensorflow", "keras"),
}


def imported_after(package: str) -> set[str]:
    code = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        import {package}
        for info in pkgutil.walk_packages({package}.__path__, "{package}."):
            importlib.import_module(info.name)
        print("\\n".join(sorted({{m.split(".")[0] for m in sys.modules}})))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_never_imports_the_other_frameworks(package):
    leaked = imported_after(package) & set(FORBIDDEN[package])
    assert not leaked, f"importing every module of {package} pulled in {sorted(leaked)}"
