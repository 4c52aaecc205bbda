"""The CDKTF app: one `PlatformStack` per environment file (stack `platform-<env>`)."""
