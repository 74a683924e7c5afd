import { defineConfig } from 'vite';

const isolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

export default defineConfig({
  build: {
    outDir: 'dist/web',
    target: 'es2022',
    emptyOutDir: true,
    chunkSizeWarningLimit: 2048,
    rollupOptions: {
      // The service worker must live at /sw.js (its scope is the folder it is served from), and
      // the embed script at the stable /brume.js that sites put in their script tag.
      input: {
        main: 'index.html',
        admin: 'admin.html',
        embed: 'embed.html',
        sw: 'worker/sw.ts',
        brume: 'web/embed-tag.ts',
      },
      output: {
        entryFileNames: (chunk) =>
          chunk.name === 'sw' || chunk.name === 'brume'
            ? `${chunk.name}.js`
            : 'assets/[name]-[hash].js',
      },
    },
  },
  worker: { format: 'es' },
  // onnxruntime-web locates its .wasm next to its own module; pre-bundling would move it.
  optimizeDeps: { exclude: ['onnxruntime-web'] },
  server: { headers: isolation, proxy: { '/api': 'http://127.0.0.1:8787' } },
  preview: { headers: isolation },
});
