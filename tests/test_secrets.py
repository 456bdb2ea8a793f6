import os
import stat

import pytest

from core.secrets import cookie_key, read_or_create_secret


def test_secret_file_is_0600_and_stable(tmp_path):
    p = tmp_path / "secrets" / "k.key"
    a = read_or_create_secret(p)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(p.parent).st_mode) == 0o700
    assert read_or_create_secret(p) == a and len(a) >= 32


def test_cookie_key_from_env_must_be_long(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSHIELD_COOKIE_KEY", "short")
    with pytest.raises(ValueError, match="32 bytes"):
        cookie_key(tmp_path)
    monkeypatch.setenv("MEDSHIELD_COOKIE_KEY", "k" * 40)
    assert cookie_key(tmp_path) == "k" * 40
    monkeypatch.delenv("MEDSHIELD_COOKIE_KEY")
    assert len(cookie_key(tmp_path).encode()) >= 32
