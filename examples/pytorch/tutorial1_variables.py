# Lec 02, Variable and Autograd: sum/max/data, grad_fn of z = 2*y + 1,
# a hook that captures z's gradient, out.backward().
import torch
from torch.autograd import Variable

x = torch.Tensor([[1, 2], [3, 4]])
print(x)
print(x.sum())
y = Variable(x, requires_grad=True)
print(y)
print(y.sum())
print(y.max())
print(y.data)
z = 2 * y + 1
print(z)

print("z :", z)
print("y.requires_grad :", y.requires_grad)
print("z.requires_grad :", z.requires_grad)
print("")
print("y.grad :", y.grad)
print("z.grad :", z.grad)
print("")
print("y.grad_fn :", y.grad_fn)
print("z.grad_fn :", z.grad_fn)

out = z.sum()
print(out)

print("y.requires_grad :", y.requires_grad)
print("z.requires_grad :", z.requires_grad)
print("out.requires_grad :", out.requires_grad)
print("")
print("y.grad :", y.grad)
print("z.grad :", z.grad)
print("out.grad :", out.grad)
print("")
print("y.grad_fn :", y.grad_fn)
print("z.grad_fn :", z.grad_fn)
print("out.grad_fn :", out.grad_fn)

zGrad = torch.zeros(2, 2)


def extract(g):
    global zGrad
    zGrad = g


z.register_hook(extract)  # the notebook shows the returned handle; not printed here
out.backward()

print("y.requires_grad :", y.requires_grad)
print("z.requires_grad :", z.requires_grad)
print("out.requires_grad :", out.requires_grad)
print("")
print("y.grad :", y.grad)
print("z.grad :", z.grad)
print("out.grad :", out.grad)
print("")
print("y.grad_fn :", y.grad_fn)
print("z.grad_fn :", z.grad_fn)
print("out.grad_fn :", out.grad_fn)
print("")
print(zGrad)
print(out.data)
