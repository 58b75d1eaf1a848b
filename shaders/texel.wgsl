// Reading the texture copies of storage buffers that the host makes for the CPU kernel set
// (src/gpu/textures.rs): the host appends this file to every family that reads them. The software
// driver loads a storage buffer element by element, lane by lane, but fetches texels with gathers.

// Texel i of a copy lies at (i % row, i / row) for rows of 1 << TEXEL_ROW_SHIFT texels (the same
// figure in src/gpu/textures.rs).
const TEXEL_ROW_SHIFT: u32 = 12u;

fn texel(t: texture_2d<f32>, i: u32) -> vec4<f32> {
    return textureLoad(t, vec2<u32>(i & ((1u << TEXEL_ROW_SHIFT) - 1u), i >> TEXEL_ROW_SHIFT), 0);
}

// Component c of v, picked by selects (on the software driver, indexing the vector by a lane's
// value was as fast or slower: slower for im2col's columns of a 3x3 convolution of 128 channels).
fn component(v: vec4<f32>, c: u32) -> f32 {
    return select(select(v.x, v.y, c == 1u), select(v.z, v.w, c == 3u), c >= 2u);
}
