"""The agent hub: NTjP producer and consumer of ProcessCervixScreeningInformation for many regions."""
