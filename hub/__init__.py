"""The agent hub: NTjP producer and consumer of ProcessCervixScreeningInformation for regions."""
