"""The providers' own request and push bodies, one module a provider (aliyun: seed 000, kx: seed 001,
tencent: seed 002) and what they share (common); pure builders and the seed documents' code tables."""
