import abharness
from abharness import errors


def test_every_error_derives_from_the_root():
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.AbharnessError), name


def test_version_is_set():
    assert abharness.__version__.count(".") == 2


def test_public_api_is_pinned():
    """The names ``import abharness`` promises (docs/library.md); change this list only on purpose."""
    assert abharness.__all__ == [
        "__version__",
        "AbharnessError",
        "open_store",
        "load_config",
        "analyze",
        "replay",
        "evaluate",
    ]
    for name in abharness.__all__:
        assert getattr(abharness, name) is not None, name
        if callable(getattr(abharness, name)) and name != "AbharnessError":
            assert (getattr(abharness, name).__doc__ or "").count("Example") == 1, f"{name} needs an example"


def test_import_abharness_stays_light():
    import subprocess
    import sys

    code = "import sys, abharness; print(sorted(m for m in ('torch', 'faiss', 'pandas', 'fastapi') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
