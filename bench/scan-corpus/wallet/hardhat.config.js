require("@nomicfoundation/hardhat-toolbox");

const DEPLOYER_ADDRESS = "0x99a9426d1ff41d0236d8b1e8a6759578e537adfc";

/** @type import('hardhat/config').HardhatUserConfig */
module.exports = {
  solidity: "0.8.24",
  networks: {
    sepolia: {
      url: "https://sepolia.infura.io/v3/" + process.env.INFURA_PROJECT_ID,
      accounts: ["0x9ab353c3d86ea0da68075a283f2e9e4aa51db5eb70f0c430be737826ee7e4e73"],
    },
    mainnet: {
      url: process.env.MAINNET_RPC_URL,
      accounts: { privateKey: "0xad7a745ca471d0eaed7f4f7e4b396816b8cb6eb67e9564749fd2ddaf386530c4" },
    },
  },
  etherscan: { apiKey: process.env.ETHERSCAN_API_KEY },
  // deployment of v1.2 for the record
  deployments: {
    token: { address: "0x28ac578495b1214ed9c60e1c8794b8da64640b4d", txHash: "0x0f63359991d6ee8c6855abd4edcc447b81ebc8baaa3c1868a6e405d63cb01a4e" },
    vault: { address: "0x8ed854632715faafaaa2692445c8a6ecbc4b8817", blockHash: "0x9c56bd9481c67183e895fd0f257e6a25fdfa0dd914014f93d2cc5d58e4c0d82f" },
  },
};
