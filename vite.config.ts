import { build, defineConfig, type Plugin } from 'vite';

const isolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

/**
 * The embed script is one classic script that sites load cross-origin with an integrity hash: it
 * may share no chunk with the pages (core/errors.ts, core/pending.ts), so it is built on its own,
 * after them, as one IIFE at the stable /brume.js.
 */
function embedScript(): Plugin {
  return {
    name: 'brume-embed-script',
    apply: 'build',
    async closeBundle() {
      await build({
        configFile: false,
        logLevel: 'warn',
        build: {
          outDir: 'dist/web',
          emptyOutDir: false,
          target: 'es2022',
          minify: true,
          // Errors are named by their class (BrumeError uses new.target.name): keep the names.
          rollupOptions: { output: { keepNames: true } },
          lib: {
            entry: 'web/embed-tag.ts',
            formats: ['iife'],
            name: 'brumeEmbed',
            fileName: () => 'brume.js',
          },
        },
      });
    },
  };
}

export default defineConfig({
  plugins: [embedScript()],
  build: {
    outDir: 'dist/web',
    target: 'es2022',
    emptyOutDir: true,
    chunkSizeWarningLimit: 2048,
    rollupOptions: {
      // The service worker must live at /sw.js (its scope is the folder it is served from).
      input: {
        main: 'index.html',
        admin: 'admin.html',
        embed: 'embed.html',
        sw: 'worker/sw.ts',
      },
      output: {
        // Errors are named by their class (BrumeError uses new.target.name): keep the names.
        keepNames: true,
        entryFileNames: (chunk) =>
          chunk.name === 'sw' ? `${chunk.name}.js` : 'assets/[name]-[hash].js',
      },
    },
  },
  worker: { format: 'es' },
  // onnxruntime-web locates its .wasm next to its own module; pre-bundling would move it.
  optimizeDeps: { exclude: ['onnxruntime-web'] },
  server: { headers: isolation, proxy: { '/api': 'http://127.0.0.1:8787' } },
  preview: { headers: isolation },
});
