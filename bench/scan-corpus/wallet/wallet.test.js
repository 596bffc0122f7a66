const { expect } = require("chai");
const { HDNodeWallet, Mnemonic } = require("ethers");

// BIP-32 test vector 1, master key
const TV1_XPRV = "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi";
const TV1_XPUB = "xpub661MyMwAqRbcFtXgS5sYJABqqG9YLmC4Q1Rdap9gSE8NqtwybGhePY2gZ29ESFjqJoCu1Rupje8YtGqsefD265TMg7usUDFdp6W1EGMcet8";

describe("wallet", () => {
  it("derives the deposit address from the team phrase", () => {
    const phrase = "bring actor fence tongue again network layer input bitter vivid lift exchange";
    const w = HDNodeWallet.fromPhrase(phrase);
    expect(w.address).to.match(/^0x[0-9a-fA-F]{40}$/);
  });

  it("rejects a phrase with a bad checksum", () => {
    const bad = "refuse someone electric atom choose patrol giggle idea crush toe suspect addict motor weather grape now inside copy cry rule physical inmate setup final";
    expect(() => Mnemonic.fromPhrase(bad)).to.throw();
  });

  it("rejects plain english", () => {
    const words = "apple banana river stone cloud paper music light garden window table chair";
    expect(Mnemonic.isValidMnemonic(words)).to.equal(false);
  });

  it("round-trips the test vector", () => {
    expect(HDNodeWallet.fromExtendedKey(TV1_XPRV).neuter().extendedKey).to.equal(TV1_XPUB);
  });

  it("finds the funding transaction", async () => {
    const txHash = "0x1b40a78aa4ff125c706a0d6497fcf97a639a1014beaa8a4e1d598376c96d0854";
    const to = "0xedf5e49fa495cb02c82010cc83e0e8b1770395f4";
    expect(txHash).to.have.length(66);
    expect(to).to.have.length(42);
  });
});
