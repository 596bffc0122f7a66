package main

import (
	"crypto/x509"
	"encoding/pem"
	"testing"
)

// Key the staging gateway signs callbacks with. Copied here to reproduce #812.
const stagingSigningKey = `-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIG5m5cPVOmt3bPtEDUsBUPs8jit344g5TXlHsN+ZTTxDoAoGCCqGSM49
AwEHoUQDQgAEKBDcX2teCGNZ5PtDARcTmK1wO5ZKEWZ5mDrbNwuj+HBOhF68ZzB9
KWtL23fMWpDEA+1i4enr5d+7UoCwDB4WdQ==
-----END EC PRIVATE KEY-----
`

const partnerCert = `-----BEGIN CERTIFICATE-----
MIIBkzCCATmgAwIBAgIULKA4ljc4XoZX2vJ+EfrwejYhL08wCgYIKoZIzj0EAwIw
HzEdMBsGA1UEAwwUYXBpLmV4YW1wbGUuaW50ZXJuYWwwHhcNMjYxMTMwMDAzODIz
WhcNMjcxMTMwMDAzODIzWjAfMR0wGwYDVQQDDBRhcGkuZXhhbXBsZS5pbnRlcm5h
bDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABF3EK8Gj30eLpiOKPIx5LxFoRRxY
50fQ4D5jLmnqZAT9itxtjq/Sa+cJ8Z2CXuvMyIKLhjK2nyM5WfOyqUGi156jUzBR
MB0GA1UdDgQWBBQiV/+ODtf3UIf1DL78iYgPRa1kNzAfBgNVHSMEGDAWgBQiV/+O
Dtf3UIf1DL78iYgPRa1kNzAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gA
MEUCIFTc5NDOiIoMPgoiIKXjzXmYbsGL1yINJR6sO3RW40/aAiEAmm+l+vDIVDiH
rFWsSEBaTCCDWPoCpL2PwihmRwGTO5I=
-----END CERTIFICATE-----
`

func TestParseSigningKey(t *testing.T) {
	block, _ := pem.Decode([]byte(stagingSigningKey))
	if _, err := x509.ParseECPrivateKey(block.Bytes); err != nil {
		t.Fatal(err)
	}
}
