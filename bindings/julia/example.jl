# Builds a small CFNet, trains it on generated rotated patterns, checks its invariance to
# quarter turns and saves it. Usage (from the repository root, after `make`):
#   CFNET_LIBRARY=$PWD/lib/libcfnet.so julia bindings/julia/example.jl [model.cfnet]
include(joinpath(@__DIR__, "src", "CFNet.jl"))
using .CFNet
using Random

const S = 16

# Rotation-invariant classes: 0 ring, 1 bar through the centre, 2 off-centre blob, each at a
# random orientation with noise. Julia arrays are (W, H, C, N): the C library's N x C x H x W.
function patterns(n, rng)
    x = zeros(Float32, S, S, 1, n)
    y = Int32[(s - 1) % 3 for s in 1:n]
    c = (S - 1) / 2
    for s in 1:n
        th = 2pi * rand(rng)
        for i in 0:S-1, j in 0:S-1           # row i, column j
            u, v = j - c, c - i
            ru, rv = u * cos(th) + v * sin(th), -u * sin(th) + v * cos(th)
            val = y[s] == 0 ? exp(-(sqrt(u^2 + v^2) - 4)^2 / 1.5) :
                  y[s] == 1 ? exp(-rv^2 / 1.5) * (abs(ru) < 5) :
                              exp(-((ru - 3.5)^2 + rv^2) / 3)
            x[j+1, i+1, 1, s] = val + 0.1 * randn(rng)
        end
    end
    return x, y
end

rng = MersenneTwister(0)
xtrain, ytrain = patterns(300, rng)
xtest, ytest = patterns(90, rng)

# The library's preset CFNet for S x S inputs (docs/guide.md), 8 filters per layer.
net = classifier("cfnet", 1, S, 3; width = 8, seed = 1)
set_metadata!(net, "class_names", "ring,bar,blob")
set_option!(net, :learning_rate, 5e-3)
println(summary_string(net))

for epoch in 1:8
    # one epoch shuffled by the network's generator; the callback could return true to stop
    train_loss, _ = train_epoch!(net, xtrain, ytrain; batch = 30,
                                 progress = (step, steps, loss, acc) -> false)
    loss, acc = evaluate(net, xtest, ytest)
    println("epoch $epoch: train loss $(round(train_loss, digits=4)), ",
            "test loss $(round(loss, digits=4)), accuracy $(round(acc, digits=3))")
end
println("metadata: ", metadata(net))
println("invariance to quarter turns: ", invariance(net, xtest[:, :, :, 1:8]))
path = length(ARGS) >= 1 ? ARGS[1] : "cfnet_julia_example.cfnet"
save(net, path)
println("saved to $path")
close(net)
