# The exact commands behind benchmarks/results/regime_map*.{jsonl,md,json,png}, in the order they ran
# (two or three at a time on the 2-core machine; each is resumable, a finished run is never repeated).
R="nice -n 5 .venv/bin/python benchmarks/regime_map.py --inits kaiming --threads 1"

# first seed: 5 methods x sigma 0.10-0.25 (VGG-8 width 1/8, mnist-5k, 20 epochs, 200 paired chips)
$R --methods "noise_injection,temperature,ovf,noise_injection warm-up,ovf warm-up" --sigmas 0.1,0.15,0.2,0.25 --seeds 0
# sigma 0.20, where noise injection failed and OVF converged: 5 seeds
$R --methods "noise_injection,temperature,ovf" --sigmas 0.2 --seeds 1,2,3,4
# sigma 0.25, where the warm-ups converged and the rest did not: 5 seeds
$R --methods "noise_injection warm-up,temperature,noise_injection" --sigmas 0.25 --seeds 1,2,3,4
$R --methods "ovf warm-up" --sigmas 0.25 --seeds 1,2,3,4
$R --methods "ovf" --sigmas 0.25 --seeds 1,2,3,4
# further cells, as time allowed
$R --methods "noise_injection warm-up" --sigmas 0.2 --seeds 1,2,3,4
$R --methods "noise_injection,temperature,noise_injection warm-up,plain" --sigmas 0.3,0.35 --seeds 0
$R --methods "ovf warm-up" --sigmas 0.3 --seeds 0
$R --methods "irs" --sigmas 0.2 --seeds 0

# LeNet-5 on mnist-5k (regime_map_lenet5.*)
$R --setting lenet5 --methods "noise_injection,temperature,ovf,noise_injection warm-up" --sigmas 0.2,0.3,0.4,0.5 --seeds 0

# tables and plots from every run so far
.venv/bin/python benchmarks/regime_map.py --render
.venv/bin/python benchmarks/regime_map.py --setting lenet5 --render
