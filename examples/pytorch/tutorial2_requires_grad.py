# requires_grad, grad_fn, mean, requires_grad_(), backward with a gradient,
# and no_grad. Random draws of the notebook are fixed to the values it shows.
# (The numpy cells on dot products and x.size's method repr are left out.)
import torch

x = torch.ones(2, 2, requires_grad=True)
print(x)
print(x.grad)
print(x.grad_fn)

y = x + 2
print(y)
print(y.grad_fn)

print(y, y.shape)
z = y * y * 3
print(z)
out = z.mean()
print(out)
print(out.grad_fn)

a = torch.tensor([[0.4449, 0.9204], [0.4554, 0.1537]])  # torch.rand(2, 2) in the notebook
print(a)
a = (a * 3) / (a - 1)
print(a)
print(a.requires_grad)
a.requires_grad_(True)
print(a.requires_grad)

b = (a * a).sum()
print(b.requires_grad)
print(b.grad_fn)

print(out)
x = torch.tensor([0.7171, -0.4471, -0.6513], requires_grad=True)  # torch.randn(3)
print(x.grad)
y = x * 2
print(y, y.grad, y.grad_fn)
print(y.data.norm())

i = 0
while y.data.norm() < 1000:
    i += 1
    y = y * 2
print(y, i)

grads = torch.tensor([0.01, 1.0, 0.0001], dtype=torch.float)
y.backward(grads)
print(x)
print(y)
print(x.grad)

print(x.requires_grad)
print((x ** 2).requires_grad)
with torch.no_grad():
    print((x ** 2).requires_grad)
