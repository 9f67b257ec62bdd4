"""Whole answer sets for the exercise notebooks, written the way the lecture's code and learners write them, not
the way course/lecture.py does: each step reads forward tensors by name (globals in the lecture), whether or not
its def line hands them in. Used by tests/test_learner_answers.py (typed into the exercise notebooks) and by the
grading tests. {step name: the cell a learner would type}. Every answer here is right unless its name says not.
"""

# The lecture's own code, line for line, cut into the notebook's steps. Each body reads what the lecture reads:
# `counts_sum_inv` in backward_counts_sum_inv, `hpreact` in backward_tanh, `bndiff` in backward_bn_mean, ...
LECTURE = {
    "backward_logprobs": """
def backward_logprobs(logprobs, Yb):
    dlogprobs = torch.zeros_like(logprobs)
    dlogprobs[range(n), Yb] = -1.0/n
    return dlogprobs
""",
    "backward_probs": """
def backward_probs(dlogprobs, probs):
    dprobs = (1.0 / probs) * dlogprobs
    return dprobs
""",
    "backward_counts_sum_inv": """
def backward_counts_sum_inv(dprobs, counts):
    dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=True)
    return dcounts_sum_inv
""",
    "backward_counts": """
def backward_counts(dcounts_sum_inv, dprobs, counts, counts_sum, counts_sum_inv):
    dcounts = counts_sum_inv * dprobs
    dcounts_sum = (-counts_sum**-2) * dcounts_sum_inv
    dcounts += torch.ones_like(counts) * dcounts_sum
    return dcounts_sum, dcounts
""",
    "backward_logits": """
def backward_logits(dcounts, counts, norm_logits, logits):
    dnorm_logits = counts * dcounts
    dlogits = dnorm_logits.clone()
    dlogit_maxes = (-dnorm_logits).sum(1, keepdim=True)
    dlogits += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes
    return dnorm_logits, dlogit_maxes, dlogits
""",
    "backward_layer2": """
def backward_layer2(dlogits, h, W2):
    dh = dlogits @ W2.T
    dW2 = h.T @ dlogits
    db2 = dlogits.sum(0)
    return dh, dW2, db2
""",
    "backward_tanh": """
def backward_tanh(dh, h):
    dhpreact = (1.0 - torch.tanh(hpreact)**2) * dh
    return dhpreact
""",
    "backward_bn_affine": """
def backward_bn_affine(dhpreact, bngain, bnraw):
    dbngain = (bnraw * dhpreact).sum(0, keepdim=True)
    dbnraw = bngain * dhpreact
    dbnbias = dhpreact.sum(0, keepdim=True)
    return dbngain, dbnbias, dbnraw
""",
    "backward_bn_var": """
def backward_bn_var(dbnraw, bndiff, bndiff2, bnvar, bnvar_inv):
    dbndiff = bnvar_inv * dbnraw
    dbnvar_inv = (bndiff * dbnraw).sum(0, keepdim=True)
    dbnvar = (-0.5*(bnvar + 1e-5)**-1.5) * dbnvar_inv
    dbndiff2 = (1.0/(n-1))*torch.ones_like(bndiff2) * dbnvar
    dbndiff += (2*bndiff) * dbndiff2
    return dbnvar_inv, dbnvar, dbndiff2, dbndiff
""",
    "backward_bn_mean": """
def backward_bn_mean(dbndiff, hprebn):
    dhprebn = dbndiff.clone()
    dbnmeani = (-dbndiff).sum(0, keepdim=True)
    dhprebn += 1.0/n * (torch.ones_like(hprebn) * dbnmeani)
    return dbnmeani, dhprebn
""",
    "backward_layer1": """
def backward_layer1(dhprebn, embcat, W1):
    dembcat = dhprebn @ W1.T
    dW1 = embcat.T @ dhprebn
    db1 = dhprebn.sum(0)
    return dembcat, dW1, db1
""",
    "backward_view": """
def backward_view(dembcat, emb):
    demb = dembcat.view(emb.shape)
    return demb
""",
    "backward_embedding_loop": """
def backward_embedding_loop(demb, Xb, C):
    dC = torch.zeros_like(C)
    for k in range(Xb.shape[0]):
        for j in range(Xb.shape[1]):
            ix = Xb[k,j]
            dC[ix] += demb[k,j]
    return dC
""",
    "backward_embedding": """
def backward_embedding(demb, Xb, C):
    dC = torch.zeros_like(C)
    dC.index_add_(0, Xb.view(-1), demb.view(-1, n_embd))
    return dC
""",
}

# Other ways people write the same steps, each reading a forward tensor it was not handed where it can.
VARIANTS = {
    "backward_logprobs": """
def backward_logprobs(logprobs, Yb):
    dlogprobs = torch.zeros((n, vocab_size))
    dlogprobs[torch.arange(n), Yb] = -1 / n
    return dlogprobs
""",
    "backward_probs": """
def backward_probs(dlogprobs, probs):
    return dlogprobs / probs
""",
    "backward_counts_sum_inv": """
def backward_counts_sum_inv(dprobs, counts):
    return (dprobs * counts).sum(dim=1, keepdims=True)
""",
    "backward_counts": """
def backward_counts(dcounts_sum_inv, dprobs, counts, counts_sum, counts_sum_inv):
    dcounts_sum = -dcounts_sum_inv / counts_sum**2
    dcounts = dprobs * counts_sum_inv + dcounts_sum.expand_as(counts)
    return dcounts_sum, dcounts
""",
    "backward_logits": """
def backward_logits(dcounts, counts, norm_logits, logits):
    dnorm_logits = norm_logits.exp() * dcounts
    dlogit_maxes = -dnorm_logits.sum(1, keepdim=True)
    dlogits = dnorm_logits + (logits == logit_maxes).float() * dlogit_maxes
    return dnorm_logits, dlogit_maxes, dlogits
""",
    "backward_layer2": """
def backward_layer2(dlogits, h, W2):
    return dlogits @ W2.t(), torch.matmul(h.t(), dlogits), dlogits.sum(0, keepdim=False)
""",
    "backward_tanh": """
def backward_tanh(dh, h):
    return (1 - h * h) * dh
""",
    "backward_bn_affine": """
def backward_bn_affine(dhpreact, bngain, bnraw):
    dbnbias = dhpreact.sum(0, keepdim=True)
    dbngain = (dhpreact * ((hprebn - bnmeani) * bnvar_inv)).sum(0, keepdim=True)
    return dbngain, dbnbias, dhpreact * bngain
""",
    "backward_bn_var": """
def backward_bn_var(dbnraw, bndiff, bndiff2, bnvar, bnvar_inv):
    dbnvar_inv = (dbnraw * bndiff).sum(0, keepdim=True)
    dbnvar = dbnvar_inv * -0.5 * (bnvar + 1e-5) ** -1.5
    dbndiff2 = dbnvar.expand(n, -1) / (n - 1)
    dbndiff = dbnraw * bnvar_inv + 2 * bndiff * dbndiff2
    return dbnvar_inv, dbnvar, dbndiff2, dbndiff
""",
    "backward_bn_mean": """
def backward_bn_mean(dbndiff, hprebn):
    dbnmeani = -dbndiff.sum(0, keepdim=True)
    dhprebn = dbndiff + dbnmeani / n
    return dbnmeani, dhprebn
""",
    "backward_layer1": """
def backward_layer1(dhprebn, embcat, W1):
    return dhprebn @ W1.T, emb.view(n, -1).T @ dhprebn, dhprebn.sum(0)
""",
    "backward_view": """
def backward_view(dembcat, emb):
    return dembcat.view(n, block_size, n_embd)
""",
    "backward_embedding_loop": """
def backward_embedding_loop(demb, Xb, C):
    dC = torch.zeros_like(C)
    for i in range(n):
        for j in range(block_size):
            dC[Xb[i, j]] += demb[i, j]
    return dC
""",
    "backward_embedding": """
def backward_embedding(demb, Xb, C):
    return torch.zeros_like(C).index_add_(0, Xb.flatten(), demb.reshape(-1, C.shape[1]))
""",
}

# Cells that break in the ways cells do. Each costs its own step's checks, nothing else.
BROKEN = {
    "syntax error": ("backward_probs", """
def backward_probs(dlogprobs, probs):
    dprobs = (1.0 / probs * dlogprobs
    return dprobs
"""),
    # an endless loop that the learner (or a time limit) interrupted: the cell stops before its def line runs
    "interrupted": ("backward_tanh", "raise KeyboardInterrupt  # stands for `while True: pass` interrupted\n"
                    + LECTURE["backward_tanh"]),
    "deleted": ("backward_layer2", ""),
    # a typo in a name: the step raises NameError on a name that is neither a forward tensor nor an argument
    "typo": ("backward_logits", LECTURE["backward_logits"].replace("* dlogit_maxes", "* dlogit_max")),
    # autograd's own answer, copied: a step sees values only, so there is no .grad to copy
    "copies autograd": ("backward_counts_sum_inv", """
def backward_counts_sum_inv(dprobs, counts):
    dcounts_sum_inv = counts_sum_inv.grad.clone()
    return dcounts_sum_inv
"""),
    # `dhprebn = dbndiff` gives one tensor two names: += changes the dbndiff already checked
    "aliased": ("backward_bn_mean", """
def backward_bn_mean(dbndiff, hprebn):
    dbnmeani = (-dbndiff).sum(0, keepdim=True)
    dhprebn = dbndiff
    dhprebn += 1.0/n * (torch.ones_like(hprebn) * dbnmeani)
    return dbnmeani, dhprebn
"""),
    # a real bug beside right lines, in the same step: a dropped keepdim
    "dropped keepdim": ("backward_bn_affine", LECTURE["backward_bn_affine"].replace(
        "dbngain = (bnraw * dhpreact).sum(0, keepdim=True)", "dbngain = (bnraw * dhpreact).sum(0)")),
}

# Notebooks 02 and 03: the fused formulas as people write them, reading forward tensors they were not handed.
FUSED = {
    "cross_entropy_backward": """
@torch.no_grad()
def cross_entropy_backward(logits, Yb):
    dlogits = F.softmax(logits, 1)
    dlogits[range(n), Yb] -= 1
    dlogits /= n
    return dlogits
""",
    "cross_entropy_backward from probs": """
@torch.no_grad()
def cross_entropy_backward(logits, Yb):
    dlogits = probs.clone()
    dlogits[range(n), Yb] -= 1
    return dlogits / n
""",
    "batchnorm_backward": """
@torch.no_grad()
def batchnorm_backward(dhpreact, bngain, bnvar_inv, bnraw):
    dhprebn = bngain*bnvar_inv/n * (n*dhpreact - dhpreact.sum(0) - n/(n-1)*bnraw*(dhpreact*bnraw).sum(0))
    return dhprebn
""",
    "batchnorm_backward from bndiff": """
@torch.no_grad()
def batchnorm_backward(dhpreact, bngain, bnvar_inv, bnraw):
    dbnraw = bngain * dhpreact
    dbnvar = (-0.5 * (bnvar + 1e-5) ** -1.5 * (bndiff * dbnraw).sum(0, keepdim=True))
    dbndiff = bnvar_inv * dbnraw + 2 * bndiff / (n - 1) * dbnvar
    return dbndiff - dbndiff.mean(0, keepdim=True)
""",
}

# The capstones' Functions. The (n, D) dgain is wrong, though loss.backward() and gradcheck would pass it.
FUNCTIONS = {
    "CrossEntropy": """
class CrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, Yb):
        ctx.save_for_backward(logits, Yb)
        return F.cross_entropy(logits, Yb)

    @staticmethod
    def backward(ctx, dloss):
        logits, Yb = ctx.saved_tensors
        dlogits = F.softmax(logits, 1)
        dlogits[range(logits.shape[0]), Yb] -= 1
        return dlogits / logits.shape[0] * dloss, None
""",
    "BatchNorm (n, D) dgain": """
class BatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gain, bias):
        var_inv = (x.var(0, keepdim=True, correction=1) + 1e-5) ** -0.5
        xhat = (x - x.mean(0, keepdim=True)) * var_inv
        ctx.save_for_backward(gain, var_inv, xhat)
        return gain * xhat + bias

    @staticmethod
    def backward(ctx, dout):
        gain, var_inv, xhat = ctx.saved_tensors
        dx = batchnorm_backward(dout, gain, var_inv, xhat)
        dgain = dout * xhat
        dbias = dout.sum(0, keepdim=True)
        return dx, dgain, dbias
""",
}

# Notebook 04's whole backward() as the lecture's exercise 4 writes it: the forward tensors read as globals.
TRAINING = """
def backward(Xb, Yb, parameters, cache):
    C, W1, b1, W2, b2, bngain, bnbias = parameters
    n = Xb.shape[0]
    dlogits = F.softmax(logits, 1)
    dlogits[range(n), Yb] -= 1
    dlogits /= n
    dh = dlogits @ W2.T
    dW2 = h.T @ dlogits
    db2 = dlogits.sum(0)
    dhpreact = (1.0 - torch.tanh(hpreact)**2) * dh
    dbngain = (bnraw * dhpreact).sum(0, keepdim=True)
    dbnbias = dhpreact.sum(0, keepdim=True)
    dhprebn = bngain*bnvar_inv/n * (n*dhpreact - dhpreact.sum(0) - n/(n-1)*bnraw*(dhpreact*bnraw).sum(0))
    dembcat = dhprebn @ W1.T
    dW1 = embcat.T @ dhprebn
    db1 = dhprebn.sum(0)
    demb = dembcat.view(emb.shape)
    dC = torch.zeros_like(C)
    for k in range(Xb.shape[0]):
        for j in range(Xb.shape[1]):
            ix = Xb[k,j]
            dC[ix] += demb[k,j]
    return [dC, dW1, db1, dW2, db2, dbngain, dbnbias]
"""

# Notebook 03's BatchNorm with running statistics, as a learner writes it; the slip keeps the biased variance.
RUNNING = """
def batchnorm_layer(x, gain, bias, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    if training:
        xmean = x.mean(0)
        xvar = x.var(0, unbiased=False)
        running_mean = (1 - momentum) * running_mean + momentum * xmean
        running_var = (1 - momentum) * running_var + momentum * x.var(0, unbiased=True)
    else:
        xmean, xvar = running_mean, running_var
    return gain * (x - xmean) / torch.sqrt(xvar + eps) + bias, running_mean, running_var
"""
