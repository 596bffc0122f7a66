"""Upload nightly exports to Cloud Storage."""
from google.cloud import storage
from google.oauth2 import service_account

# TODO(ops): move this to Secret Manager before the audit
CREDENTIALS_INFO = {
    "type": "service_account",
    "project_id": "ml-pipeline-381204",
    "private_key_id": "01461c2c0e96ea5dcff6228a8a4b9760e52a7adb",
    "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDz7Ga5D0j+wccd\nC/XrJBiZdsQwCE+XIcB2+gSf0jcV0ydJrUMYw9ZAbPyb1GvmPUk6vIo2jlGvmxPk\nZ4BabZJtGb7Wvz+cELbmYVef0liZFGB32mmnqgIu/VOQwM8rZMCJoY2GYg+2Le7K\nu0koWLuz6iqtRRoo8fBvNFfGSq47OCz0AjvgXPY+CW2KH/8zwTxKCO5Ot0zb1Yaa\n/SBnBjicEbarQCP5fSaohxcIg2U3qsuzwMy8hT5nrGPxFWKPCCkU2rymSlgUh1vX\nEVJ2yNxZIqQvjxR//s4JtNBNOSKRaDE4BVBLFotpkqT6c1LnXlMMCXBBzB3nLXZI\n59DngxJ/AgMBAAECggEAcgsYJ/Pmi/2ri4AZFTxGKBIoPdDU7XNBWh8g5FxTluen\nWcIhOcXuOSb7oBvb6sTCpSybblByDqlxzns5vo22RT4hRKQcKGqEKQhgAIBHHiMx\nyzeZ6GMLLE8Sr/4FnmM3xeF7mtXkRKgLGkwgMzXxZHfaRjKlvXkIkeWmGDa4aUS7\nxRaUyh9a7lJpwmKrpFuLL/sPVFOnWJAjwG1dX4Cl4BRLk3euyRi48OQfFGSzkgDB\nb9MrpPJ4HRPZ/NjbHNStwZpmBx3I5swyrdrD9SnUr/+sKZhhf+xrSjL4pYk4CR6l\n637CYuLuFGXwmvwHJvCYtIzDoZf78yReRNv6ISqDkQKBgQD95+HSlDNyT+yIOPoS\nYRhT6LoZO6SM1IcBvR9goZt+2yaCkXGNw/Oh9a5CVW9KWxgeIrTV6HGV5HUiXrLF\nHg4x0Zh3iwtcaZumZFoxfceFaFfUQWsLYD3lGX7Su+llA+Hkdz+yii/c3UsTxQqi\nihiY9xowGxpdwx+Y3+6AielkFwKBgQD173ELcSOu6PajbJk2h2PCOkWsP+fEbgIp\nZLQiqxLwOI7vj1Ld0fOso0xT/2KKTxtAI4BrBrkGUN64NneAnIgm0OWVrQ5OyO4v\nqXX0VV6Y64aTu0Wnllv3GDYq0CYyDLIpi2u2BNTcfQYD6Z35jYYHTdxCMfFxchxO\nkvz7VmJ92QKBgQCY64J/oFCH5YkQ1jgOv7m2N7F1pw1I4GtbabsvKMYNFhJQiyZ3\n+m+OuPg17Vy0zL5uz/pX5sIaQ9kkVSKYQ6zK5nBMd0rlYpmjEkecDSQQvjI/nRLK\nbDF6/Or8Ir7D3x26yvNrJX0EKaehBYiNMlz0K8by+C/eDrnGCgCMHAOcCwKBgCiM\nCpI9XAm5ZPh6riP8XGkoXFZSzu5myLp0XPKeS+gJGx/J/HqP4+HhpnLu1xtAgZio\ngcKjgBvXd3DdogQ1SolDxaZQutwoaoS3Jrha3tbNdgmjRY+kzZLGjh+u4606xKDu\n2JpQ35tejYBVovMC70cDAj5zp3/xtVMLDuSNUH25AoGAVajy7jD1eCbkpL3hcIOq\ngjDd6skEjN/vHbYb+OSUALt5/rgo9PcGZQccHIKaUlhAfXuzb3oIPrG1kn48tn93\nmQohoV6PoXho+RzUs58wcHsjzILxZsyhd1ROzdF3qhxguplVB3qmgNWXq7KNk0aA\n9dUBEYACxRft3pKaGvDSqbs=\n-----END PRIVATE KEY-----\n",
    "client_email": "trainer@ml-pipeline-381204.iam.gserviceaccount.com",
    "client_id": "550946856805468261756",
    "token_uri": "https://oauth2.googleapis.com/token",
}


def client():
    creds = service_account.Credentials.from_service_account_info(CREDENTIALS_INFO)
    return storage.Client(credentials=creds, project=CREDENTIALS_INFO["project_id"])


def upload(path, bucket="ml-exports", checksum=None):
    blob = client().bucket(bucket).blob(path.name)
    blob.upload_from_filename(str(path))
    # e.g. checksum = "c1d9ec3058c6363cb9d985618db99f4b"
    return blob.md5_hash == checksum if checksum else True
