// Whether the CUDA runtime tests can run here: a libcuda that initializes, at least one device,
// and a libnvrtc to compile the persistent kernels. Gives the reason to skip, naming what was
// missing (every machine without an NVIDIA GPU skips).
import { CudaDriver } from "../../ffi/cuda.ts";
import { Nvrtc } from "../../ffi/nvrtc.ts";

/** The reason the CUDA runtime cannot run here, or false when it can. */
export function cudaRuntimeSkip(): string | false {
  try {
    const driver = CudaDriver.open();
    const n = driver.deviceCount();
    driver.close();
    if (n === 0) return "libcuda loaded but reports no CUDA device";
  } catch (err) {
    return `no CUDA device: ${(err as Error).message.split("\n")[0]}`;
  }
  try {
    Nvrtc.open({ cache: false }).close();
  } catch (err) {
    return `no NVRTC to compile kernels: ${(err as Error).message.split("\n")[0]}`;
  }
  return false;
}
