"""The same training from Python: IRS on LeNet-5, then a torch Monte Carlo check over 20 chips."""

import os

from nft_deploy.data import load_data
from nft_deploy.training import TrainConfig, torch_monte_carlo, train

quick = bool(os.environ.get("NFT_EXAMPLE_QUICK"))
config = TrainConfig(model="lenet5", data="mnist-5k", method="irs", profile="nft_reference", sigma=0.3,
                     epochs=1 if quick else 10, limit_train=500 if quick else None, seed=0,
                     output="runs/examples/irs.pt")
result = train(config)
data = load_data("mnist-5k")
mc = torch_monte_carlo(result.model, config.resolved_profile(), data.x_test, data.y_test, chips=20, seed=0)
print(f"IRS: clean {result.metrics['clean_acc']:.4f}, 20 chips: {mc.mean:.4f} +/- {mc.std:.4f}")
