# %% [markdown]
# ## Set-up: the lecture's model and one batch
#
# The model, the initialisation and the batch of notebook 01. Every size lives in the next cell; everything
# after it is computed from these names.

# %% tags=["sizes"]
batch_size = 32   # n, the examples in one batch
n_embd = 10       # dimensions of each character's embedding
n_hidden = 64     # neurons in the hidden (BatchNorm) layer
block_size = 3    # characters of context used to predict the next one

# %%
words = utils.load_words(ROOT / "names.txt")
(Xtr, Ytr), (Xdev, Ydev), (Xte, Yte) = utils.split_dataset(words, block_size)
vocab_size = utils.vocab_size
print(f"{len(words)} names; {Xtr.shape[0]} training examples of {block_size} characters each")

# %%
# include: lecture.init_params

g = torch.Generator().manual_seed(2147483647)
parameters = init_params(vocab_size, n_embd, n_hidden, block_size, g, requires_grad=True)
C, W1, b1, W2, b2, bngain, bnbias = parameters
print(sum(p.nelement() for p in parameters), "parameters")

# %%
n = batch_size  # the name the math uses
ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=g)
Xb, Yb = Xtr[ix], Ytr[ix]  # a batch: contexts (n, block_size), next characters (n,)
print(f"batch: Xb {tuple(Xb.shape)}, Yb {tuple(Yb.shape)}")

# %% [markdown]
# The forward pass, cut into atoms as in notebook 01. It returns every tensor it makes in one object `fw`:
# `fw.logits` are the logits, `fw.hprebn` is BatchNorm's input, `fw.hpreact` its output.

# %%
# include: lecture.forward

fw = forward(C, W1, b1, W2, b2, bngain, bnbias, Xb, Yb)
print(f"loss at init: {fw.loss.item():.2f}")
