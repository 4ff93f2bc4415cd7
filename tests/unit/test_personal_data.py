"""Personal data sealing: authenticated, bound to its column, found by keyed hash only."""

from __future__ import annotations

import base64

import pytest
from cryptography.exceptions import InvalidTag

from guahao.platform.personal_data import PersonalDataVault, mask_document, mask_phone

KEY = base64.b64encode(b"k" * 32).decode()
OTHER_KEY = base64.b64encode(b"o" * 32).decode()


def test_a_sealed_value_opens_to_itself_and_never_shows_the_plaintext() -> None:
    vault = PersonalDataVault(KEY)
    sealed = vault.seal("document", "11010519491231002X")
    assert b"11010519491231002X" not in sealed
    assert vault.open("document", sealed) == "11010519491231002X"


def test_sealing_twice_gives_different_ciphertexts() -> None:
    vault = PersonalDataVault(KEY)
    assert vault.seal("phone", "13812345678") != vault.seal("phone", "13812345678")


def test_a_ciphertext_moved_to_another_column_does_not_open() -> None:
    vault = PersonalDataVault(KEY)
    with pytest.raises(InvalidTag):
        vault.open("phone", vault.seal("document", "11010519491231002X"))


def test_a_tampered_ciphertext_does_not_open() -> None:
    vault = PersonalDataVault(KEY)
    sealed = bytearray(vault.seal("phone", "13812345678"))
    sealed[-1] ^= 1
    with pytest.raises(InvalidTag):
        vault.open("phone", bytes(sealed))


def test_another_key_opens_nothing() -> None:
    with pytest.raises(InvalidTag):
        PersonalDataVault(OTHER_KEY).open(
            "phone", PersonalDataVault(KEY).seal("phone", "13812345678")
        )


def test_lookup_hashes_are_keyed_normalised_and_per_field() -> None:
    vault = PersonalDataVault(KEY)
    assert vault.index("document", "11010519491231002x") == vault.index(
        "document", " 11010519491231002X "
    )
    assert vault.index("document", "13812345678") != vault.index("phone", "13812345678")
    assert vault.index("phone", "13812345678") != PersonalDataVault(OTHER_KEY).index(
        "phone", "13812345678"
    )


def test_a_key_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        PersonalDataVault(base64.b64encode(b"short").decode())


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("11010519491231002X", "110105********002X"),
        ("440524188001010014", "440524********0014"),
        ("E12345678", "E12****78"),
    ],
)
def test_documents_are_masked_keeping_area_and_last_four(number: str, masked: str) -> None:
    assert mask_document(number) == masked


def test_phones_are_masked_keeping_three_and_four() -> None:
    assert mask_phone("13812345678") == "138****5678"
