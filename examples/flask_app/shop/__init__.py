"""The example shop's own code: its models (shop.models), imported by the app and named by sync.yaml."""
