"""The files here are typed user scripts, checked by pyright and mypy (tests/test_typing.py);
pytest neither collects nor imports them."""

collect_ignore_glob = ["*_user.py", "negative_*.py"]
