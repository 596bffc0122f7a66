"""Sweep old paper wallets into the hot wallet."""
from bitcoinlib.keys import HDKey, Key

# imported from the 2019 paper wallet (compressed WIF)
PAPER_WIF = "Kxv6qUzLCjbz5jThX5CwtPhgTkn645VHokxdHVdbqYoS5H1o8SFM"

# master key of the treasury HD wallet (account 0 is used for payouts)
TREASURY_XPRV = "xprv9s21ZrQH143K2bWuRrtBXAPgMjJw5DFVFToFXozrQsZQsBrz9MoY83LrvxokXTaudhJsx561B6wJVU3UtMYwD1j5n4sDc8J8j71bWfhdCeK"

BLOCK_HASH = "71920cf6b8c4863f81dcfcfa7aa4c60de82af2910faba39589fd8f7a2d9adf74"


def sweep(to_address):
    key = Key(PAPER_WIF)
    master = HDKey(TREASURY_XPRV)
    return key.address(), master.subkey_for_path("m/44'/0'/0'/0/0").address()
