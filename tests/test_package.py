import abharness
from abharness import errors


def test_every_error_derives_from_the_root():
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.AbharnessError), name


def test_version_is_set():
    assert abharness.__version__.count(".") == 2
