use crate::chain::{Client, H256};

// Anvil's default account #0 is public; this one is the team's funded testnet key.
const FUNDED_KEY: &str = "0xa7996bfcf04897748966d87cadfa3c728585ee345c076b9c36143775d501c23f";
const TX_HASH: &str = "0x2ab09a8b29f54d759e3da39862906eb3028e0d933e4d716b40d54cf1557e2ddf";
const BLOCK_HASH: &str = "0x20a9605c4b1e43f8eebc3c1d904fd6db704e10366287b349ead535759b9b2b23";
const CONTRACT: &str = "0x78c76874717f520cc92fc7022d8101c9710a1dc6";

#[test]
fn decodes_transfer_log() {
    let tx: H256 = TX_HASH.parse().unwrap();
    let block: H256 = BLOCK_HASH.parse().unwrap();
    let client = Client::with_key(FUNDED_KEY);
    assert!(client.receipt(tx).unwrap().block_hash == block);
    assert_eq!(CONTRACT.len(), 42);
}
