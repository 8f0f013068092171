"""Built-in device profiles (JSON data). Load them with ``nft_deploy.load_profile(name)``."""
