"""Settings: what they derive follows what they hold."""

from __future__ import annotations

from queue_service.settings import Settings


def test_settings_copied_with_changes_derive_from_the_changes() -> None:
    first = Settings(callback_allowed_networks="10.0.0.0/8", api_keys="a:key-one")
    assert [str(n) for n in first.allowed_callback_networks] == ["10.0.0.0/8"]
    assert first.api_key_tenants == {"key-one": "a"}
    copied = first.model_copy(
        update={"callback_allowed_networks": "127.0.0.0/8", "api_keys": "b:key-two"}
    )
    assert [str(n) for n in copied.allowed_callback_networks] == ["127.0.0.0/8"]
    assert copied.api_key_tenants == {"key-two": "b"}
