"""The kernel lab: each kernel family as a unit of study, run alone.

    python -m microst.lab --list                                   families, versions, what each changes
    python -m microst.lab conv --kernel-version all --device emu   validate every version, then time it
    python -m microst.lab flops --net johnson --size 512           useful vs issued FLOPs of a network

A family (conv, norm, loss, pool, pad, activation, arith) is a module of microst/ops: its NumPy
reference, its ops, its kernel versions (kernels/<family>_vN.cu) and its cases. `family` runs
the cases (microst.lab.family), `flops` counts a network's GEMM work (microst.lab.flops).
"""
