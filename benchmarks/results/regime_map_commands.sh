# The exact commands behind benchmarks/results/regime_map*.{jsonl,md,json,png}, in the order they ran
# (two to four at a time on the 2-core machine; each is resumable, a finished run is never repeated; some
# queues were stopped part way, so a command's later seeds may be missing: the jsonl holds what finished).
R="nice -n 5 .venv/bin/python benchmarks/regime_map.py --inits kaiming --threads 1"

# VGG-8 width 1/8, mnist-5k, 20 epochs, 200 paired chips (regime_map.*)
$R --methods "noise_injection,temperature,ovf,noise_injection warm-up,ovf warm-up" --sigmas 0.1,0.15,0.2,0.25 --seeds 0
$R --methods "noise_injection,temperature,ovf" --sigmas 0.2 --seeds 1,2,3,4
$R --methods "noise_injection warm-up,temperature,noise_injection" --sigmas 0.25 --seeds 1,2,3,4
$R --methods "ovf warm-up" --sigmas 0.25 --seeds 1,2,3,4
$R --methods "noise_injection warm-up" --sigmas 0.2 --seeds 1,2,3,4
$R --methods "noise_injection,temperature,noise_injection warm-up,plain" --sigmas 0.3,0.35 --seeds 0
$R --methods "ovf" --sigmas 0.25 --seeds 1,2,3,4
$R --methods "ovf warm-up" --sigmas 0.3 --seeds 0
$R --methods "irs" --sigmas 0.2 --seeds 0
$R --methods "temperature warm-up" --sigmas 0.25 --seeds 0,1,2,3,4
$R --methods "temperature warm-up" --sigmas 0.2,0.3 --seeds 0
$R --methods "irs,ovf detached,noise_injection x4" --sigmas 0.2 --seeds 0
$R --methods "irs" --sigmas 0.25 --seeds 0
# session 3 (two queues at a time, plus the Fashion-MNIST queue)
R0="nice -n 5 .venv/bin/python benchmarks/regime_map.py --threads 1"
$R0 --inits default --methods "noise_injection,plain,temperature,irs,ovf" --sigmas 0.35 --seeds 0
$R0 --inits kaiming --methods "irs" --sigmas 0.25,0.2 --seeds 1,2,3,4
$R0 --inits default --methods "noise_injection,temperature,irs,ovf" --sigmas 0.25 --seeds 0
$R0 --inits kaiming --methods "ovf detached" --sigmas 0.25 --seeds 0,1,2,3,4
$R0 --inits kaiming --methods "ovf,irs" --sigmas 0.3,0.35 --seeds 0                        
$R0 --inits kaiming --methods "noise_injection warm-up,temperature warm-up" --sigmas 0.3 --seeds 1,2,3,4
$R0 --inits kaiming --methods "ovf warm-up" --sigmas 0.3 --seeds 1,2,3,4
$R0 --inits kaiming --methods "noise_injection x4" --sigmas 0.25 --seeds 0,1,2,3,4
$R0 --inits kaiming --methods "plain" --sigmas 0.25 --seeds 0                              
$R0 --inits kaiming --methods "irs,plain" --sigmas 0.1,0.15 --seeds 0                      
$R0 --inits kaiming --methods "plain" --sigmas 0.25 --seeds 1,2,3,4

# LeNet-5, mnist-5k (regime_map_lenet5.*)
L="nice -n 5 .venv/bin/python benchmarks/regime_map.py --setting lenet5 --threads 1"
$L --inits kaiming --methods "noise_injection,temperature,ovf,noise_injection warm-up" --sigmas 0.2,0.3,0.4,0.5 --seeds 0
$L --inits kaiming --methods "noise_injection,temperature,ovf,irs" --sigmas 0.25 --seeds 0,1,2,3,4
$L --inits kaiming --methods "irs" --sigmas 0.2,0.3 --seeds 0
$L --inits kaiming --methods "noise_injection,temperature,ovf" --sigmas 0.3 --seeds 1,2,3,4
$L --inits kaiming --seeds 0
$L --inits default --seeds 0
$L --inits kaiming --methods "temperature warm-up,ovf warm-up,noise_injection warm-up" --sigmas 0.3,0.35 --seeds 0,1,2,3,4
$L --inits kaiming --methods "temperature warm-up" --sigmas 0.1,0.15,0.2,0.25 --seeds 0
$L --inits kaiming,default --edge-seeds 1,2,3,4          # stopped early: the next step

# LeNet-5, Fashion-MNIST, first 5,000 training and 1,000 test images (regime_map_lenet5_fashion.*)
F="nice -n 5 .venv/bin/python benchmarks/regime_map.py --setting lenet5-fashion --threads 1"
$F --inits kaiming --methods "noise_injection,temperature,ovf" --sigmas 0.2,0.3,0.4 --seeds 0
$F --inits default --methods "noise_injection" --sigmas 0.3,0.4 --seeds 0
$F --inits kaiming --methods "noise_injection,temperature,ovf" --sigmas 0.35,0.3 --seeds 0,1,2,3,4
$F --inits default --methods "temperature,ovf" --sigmas 0.4 --seeds 0
$F --inits kaiming --methods "irs,noise_injection warm-up,ovf warm-up,temperature warm-up" --sigmas 0.35 --seeds 0,1,2,3,4
$F --inits default --methods "noise_injection,temperature,ovf,irs" --sigmas 0.3,0.35,0.4 --seeds 0
$F --inits kaiming --methods "noise_injection warm-up,temperature warm-up,ovf warm-up" --sigmas 0.4 --seeds 0,1,2,3,4

# tables and plots from every run so far
.venv/bin/python benchmarks/regime_map.py --render
.venv/bin/python benchmarks/regime_map.py --setting lenet5 --render
.venv/bin/python benchmarks/regime_map.py --setting lenet5-fashion --render
